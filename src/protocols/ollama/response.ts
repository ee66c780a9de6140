import { ndjsonFrame } from '../framing.js'
import type { ChatDelta, ChatResult, FinishReason, StreamStep, ToolCall, Usage } from '../internal.js'

// Ollama chat/generate responses: writing them for clients, reading them from Ollama backends.

export type OllamaKind = 'chat' | 'generate'

const MS_TO_NS = 1_000_000

interface OllamaToolCall { id?: string, function?: { index?: number, name?: string, arguments?: unknown } }
interface OllamaChunk {
  message?: { content?: string, thinking?: string, tool_calls?: OllamaToolCall[] }
  response?: string
  thinking?: string
  done?: boolean
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
  error?: unknown
}

function encodeToolCalls (calls: ToolCall[]): object[] {
  return calls.map((c, index) => ({
    ...(c.id !== undefined && { id: c.id }),
    function: { index, name: c.name, arguments: typeof c.arguments === 'string' ? parseObject(c.arguments) : c.arguments },
  }))
}

function parseObject (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return {}
  }
}

interface Timing { startedAt: number, firstTokenAt?: number }

/** The fields of Ollama's final chunk; eval counts are always present (BioChatter reads eval_count). */
function finalFields (reason: FinishReason, usage: Usage, timing: Timing): object {
  const now = Date.now()
  const firstToken = timing.firstTokenAt ?? now
  return {
    done: true,
    done_reason: reason === 'length' ? 'length' : 'stop',
    total_duration: (now - timing.startedAt) * MS_TO_NS,
    load_duration: 0,
    prompt_eval_count: usage.promptTokens,
    prompt_eval_duration: (firstToken - timing.startedAt) * MS_TO_NS,
    eval_count: usage.completionTokens,
    eval_duration: (now - firstToken) * MS_TO_NS,
  }
}

function body (kind: OllamaKind, d: ChatDelta): object {
  if (kind === 'generate') {
    return { response: d.content ?? '', ...(d.thinking !== undefined && { thinking: d.thinking }) }
  }
  return {
    message: {
      role: 'assistant',
      content: d.content ?? '',
      ...(d.thinking !== undefined && { thinking: d.thinking }),
      ...(d.toolCalls !== undefined && { tool_calls: encodeToolCalls(d.toolCalls) }),
    },
  }
}

export function ollamaResult (model: string, kind: OllamaKind, result: ChatResult, usage: Usage, timing: Timing): object {
  return {
    model,
    created_at: new Date().toISOString(),
    ...body(kind, { content: result.content, ...(result.thinking !== undefined && { thinking: result.thinking }), ...(result.toolCalls !== undefined && { toolCalls: result.toolCalls }) }),
    ...finalFields(result.finishReason, usage, timing),
  }
}

/** Writes an Ollama NDJSON stream from internal deltas. */
export class OllamaStreamWriter {
  private readonly timing: Timing = { startedAt: Date.now() }

  constructor (private readonly model: string, private readonly kind: OllamaKind, startedAt: number) {
    this.timing.startedAt = startedAt
  }

  delta (d: ChatDelta): string {
    this.timing.firstTokenAt ??= Date.now()
    return ndjsonFrame({ model: this.model, created_at: new Date().toISOString(), ...body(this.kind, d), done: false })
  }

  finish (reason: FinishReason, usage: Usage): string {
    return ndjsonFrame({ model: this.model, created_at: new Date().toISOString(), ...body(this.kind, {}), ...finalFields(reason, usage, this.timing) })
  }
}

export function ollamaStreamError (message: string): string {
  return ndjsonFrame({ error: message })
}

function readDelta (chunk: OllamaChunk): ChatDelta {
  const delta: ChatDelta = {}
  const content = chunk.message?.content ?? chunk.response
  if (typeof content === 'string' && content !== '') delta.content = content
  const thinking = chunk.message?.thinking ?? chunk.thinking
  if (typeof thinking === 'string' && thinking !== '') delta.thinking = thinking
  const calls = chunk.message?.tool_calls
  if (Array.isArray(calls) && calls.length > 0) {
    delta.toolCalls = calls.map((c) => ({ ...(c.id !== undefined && { id: c.id }), name: c.function?.name ?? '', arguments: c.function?.arguments ?? {} }))
  }
  return delta
}

function readUsage (chunk: OllamaChunk): Usage | undefined {
  if (typeof chunk.eval_count !== 'number' && typeof chunk.prompt_eval_count !== 'number') return undefined
  return { promptTokens: chunk.prompt_eval_count ?? 0, completionTokens: chunk.eval_count ?? 0 }
}

// A chat chunk with only answer text, as Ollama writes nearly every line of a stream (field order
// included), with or without its line end. Its content is taken as the JSON string literal it is,
// strictly to JSON's grammar: a translation puts it in its own chunk without parsing the line and
// encoding the text again. Any other line (thinking, tool calls, generate, the last) is parsed.
const PLAIN_CONTENT = /^\{"model":"[^"\\]*","created_at":"[^"\\]*","message":\{"role":"assistant","content":("(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")\},"done":false\}\r?\n?$/

/** The content of a plain answer-text chunk as a JSON string literal; undefined for any other line. */
export function plainContentLiteral (line: string): string | undefined {
  return PLAIN_CONTENT.exec(line)?.[1]
}

/** Reads an Ollama NDJSON stream (chat or generate) into internal steps. */
export class OllamaStreamReader {
  finishReason: FinishReason = 'stop'
  usage: Usage | undefined

  read (line: string): StreamStep {
    let chunk: OllamaChunk
    try {
      chunk = JSON.parse(line) as OllamaChunk
    } catch {
      return { error: 'backend sent a malformed stream line' }
    }
    if (chunk.error !== undefined) return { error: typeof chunk.error === 'string' ? chunk.error : JSON.stringify(chunk.error) }
    const delta = readDelta(chunk)
    const step: StreamStep = Object.keys(delta).length > 0 ? { delta } : {}
    if (chunk.done === true) {
      this.finishReason = chunk.done_reason === 'length' ? 'length' : 'stop'
      this.usage = readUsage(chunk)
      step.done = true
    }
    return step
  }
}

/** A non-streamed Ollama answer from a backend, as a ChatResult. */
export function readOllamaResult (value: unknown): ChatResult {
  const chunk = value as OllamaChunk
  const delta = readDelta(chunk)
  const usage = readUsage(chunk)
  return {
    content: delta.content ?? '',
    ...(delta.thinking !== undefined && { thinking: delta.thinking }),
    ...(delta.toolCalls !== undefined && { toolCalls: delta.toolCalls }),
    finishReason: delta.toolCalls !== undefined ? 'tool_calls' : chunk.done_reason === 'length' ? 'length' : 'stop',
    ...(usage !== undefined && { usage }),
  }
}

/** The integer right after the first `key` at or past `from`. */
function integerAfter (text: string, key: string, from: number): number | undefined {
  const at = text.indexOf(key, from)
  if (at === -1) return undefined
  const value = Number.parseInt(text.slice(at + key.length, at + key.length + 16), 10)
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined
}

/**
 * The usage of an Ollama answer that passes through (a whole answer, or a stream's done line),
 * read without parsing it. Go writes compact JSON with the counts after `"done":true`, and inside
 * a JSON string every quote is escaped, so `,"done":true` is a key of the answer, not text in it.
 * Anything else (another server's spacing, no counts) is undefined: the caller parses the answer.
 */
export function tapOllamaUsage (text: string): Usage | undefined {
  const done = text.lastIndexOf(',"done":true')
  if (done === -1 || !text.trimEnd().endsWith('}')) return undefined
  const promptTokens = integerAfter(text, ',"prompt_eval_count":', done)
  const completionTokens = integerAfter(text, ',"eval_count":', done)
  if (promptTokens === undefined || completionTokens === undefined) return undefined
  return { promptTokens, completionTokens }
}
