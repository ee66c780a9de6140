import { randomBytes, randomUUID } from 'node:crypto'
import { openaiErrorBody } from '../../errors.js'
import { sseFrame } from '../framing.js'
import type { ChatDelta, ChatResult, FinishReason, StreamStep, ToolCall, Usage } from '../internal.js'

// OpenAI chat responses: writing them for clients, reading them from OpenAI-compatible backends.

// randomUUID draws from a pre-filled entropy cache: randomBytes per stream (a call into OpenSSL
// and a Buffer) showed up at 3.5% of a translated stream's CPU.
const completionId = (): string => `chatcmpl-${randomUUID().replaceAll('-', '').slice(0, 24)}`
const toUsage = (u: Usage): object => ({ prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.promptTokens + u.completionTokens })

function encodeToolCalls (calls: ToolCall[], firstIndex = 0): object[] {
  return calls.map((c, i) => ({
    index: firstIndex + i,
    id: c.id ?? `call_${randomBytes(6).toString('hex')}`,
    type: 'function',
    function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}) },
  }))
}

export function openaiCompletion (model: string, result: ChatResult): object {
  const message: Record<string, unknown> = { role: 'assistant', content: result.content }
  if (result.thinking !== undefined) message.reasoning = result.thinking
  if (result.toolCalls !== undefined && result.toolCalls.length > 0) message.tool_calls = encodeToolCalls(result.toolCalls)
  return {
    id: completionId(),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, finish_reason: result.finishReason }],
    usage: toUsage(result.usage ?? { promptTokens: 0, completionTokens: 0 }),
  }
}

/** Writes an OpenAI SSE stream from internal deltas; one `created` and `id` for the whole stream. */
export class OpenAIStreamWriter {
  private readonly id = completionId()
  private readonly created = Math.floor(Date.now() / 1000)
  private roleSent = false
  private toolCallCount = 0
  // Every chunk of a stream starts alike: its JSON head is written once (same bytes as stringify).
  private readonly head: string

  constructor (private readonly model: string, private readonly includeUsage: boolean) {
    this.head = `data: {"id":${JSON.stringify(this.id)},"object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(model)},`
  }

  private chunk (delta: object, finishReason: FinishReason | null): string {
    return this.chunkOf(JSON.stringify(delta), finishReason)
  }

  /** A chunk around a delta already in JSON. */
  private chunkOf (deltaJson: string, finishReason: FinishReason | null): string {
    return `${this.head}"choices":[{"index":0,"delta":${deltaJson},"finish_reason":${finishReason === null ? 'null' : `"${finishReason}"`}}]}\n\n`
  }

  delta (d: ChatDelta): string {
    const delta: Record<string, unknown> = {}
    if (d.content !== undefined && d.content !== '') delta.content = d.content
    if (d.thinking !== undefined && d.thinking !== '') delta.reasoning = d.thinking
    if (d.toolCalls !== undefined && d.toolCalls.length > 0) {
      delta.tool_calls = encodeToolCalls(d.toolCalls, this.toolCallCount)
      this.toolCallCount += d.toolCalls.length
    }
    if (Object.keys(delta).length === 0) return ''
    if (this.roleSent) return this.chunk(delta, null)
    this.roleSent = true
    return this.chunk({ role: 'assistant', ...delta }, null)
  }

  /** A chunk of answer text given as a JSON string literal (see plainContentLiteral); '' for empty text. */
  contentLiteral (literal: string): string {
    if (literal === '""') return ''
    if (this.roleSent) return this.chunkOf(`{"content":${literal}}`, null)
    this.roleSent = true
    return this.chunkOf(`{"role":"assistant","content":${literal}}`, null)
  }

  finish (reason: FinishReason, usage: Usage): string {
    const finishReason = this.toolCallCount > 0 ? 'tool_calls' : reason
    let out = this.chunk(this.roleSent ? {} : { role: 'assistant', content: '' }, finishReason)
    if (this.includeUsage) {
      out += sseFrame({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [], usage: toUsage(usage) })
    }
    return out + 'data: [DONE]\n\n'
  }
}

export function openaiStreamError (status: number, message: string, code?: string): string {
  return sseFrame(openaiErrorBody(status, message, code))
}

interface Choice { delta?: Record<string, unknown>, message?: Record<string, unknown>, finish_reason?: string | null }
interface Chunk { choices?: Choice[], usage?: { prompt_tokens?: number, completion_tokens?: number } | null, error?: unknown }
interface PartialToolCall { id?: string, name: string, args: string }

function readUsage (u: Chunk['usage']): Usage | undefined {
  if (u === null || u === undefined || typeof u.prompt_tokens !== 'number') return undefined
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens ?? 0 }
}

function readFinish (reason: string | null | undefined): FinishReason {
  return reason === 'length' ? 'length' : reason === 'tool_calls' ? 'tool_calls' : 'stop'
}

function parseArgs (text: string): unknown {
  try {
    return JSON.parse(text === '' ? '{}' : text)
  } catch {
    return text // an unparsable argument string is handed on as it came
  }
}

export function upstreamErrorText (error: unknown): string {
  if (typeof error === 'string') return error
  const message = (error as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message : JSON.stringify(error)
}

/** Reads an OpenAI-compatible SSE stream (OpenAI, vLLM, Xinference) into internal steps. */
export class OpenAIStreamReader {
  finishReason: FinishReason | undefined
  usage: Usage | undefined
  private readonly toolCalls: PartialToolCall[] = []

  /** `data` is one SSE event's data. */
  read (data: string): StreamStep {
    if (data === '[DONE]') return { done: true }
    let chunk: Chunk
    try {
      chunk = JSON.parse(data) as Chunk
    } catch {
      return { error: 'backend sent malformed stream data' }
    }
    if (chunk.error !== undefined && chunk.error !== null) return { error: upstreamErrorText(chunk.error) }
    this.usage = readUsage(chunk.usage) ?? this.usage
    const choice = chunk.choices?.[0]
    if (choice === undefined) return {}
    const d = choice.delta ?? {}
    const delta: ChatDelta = {}
    if (typeof d.content === 'string' && d.content !== '') delta.content = d.content
    const thinking = d.reasoning_content ?? d.reasoning
    if (typeof thinking === 'string' && thinking !== '') delta.thinking = thinking
    for (const tc of (d.tool_calls ?? []) as Array<{ index?: number, id?: string, function?: { name?: string, arguments?: string } }>) {
      const slot = this.toolCalls[tc.index ?? 0] ??= { name: '', args: '' }
      if (tc.id !== undefined) slot.id = tc.id
      slot.name += tc.function?.name ?? ''
      slot.args += tc.function?.arguments ?? ''
    }
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) {
      this.finishReason = readFinish(choice.finish_reason)
      // Tool calls arrive in pieces; hand them on whole once the model says it is finished.
      if (this.toolCalls.length > 0) {
        delta.toolCalls = this.toolCalls.map((c) => ({ ...(c.id !== undefined && { id: c.id }), name: c.name, arguments: parseArgs(c.args) }))
      }
    }
    return Object.keys(delta).length > 0 ? { delta } : {}
  }
}

/** A non-streamed OpenAI chat.completion from a backend, as a ChatResult. */
export function readOpenAICompletion (body: unknown): ChatResult {
  const chunk = body as Chunk
  const message = chunk.choices?.[0]?.message ?? {}
  const thinking = message.reasoning_content ?? message.reasoning
  const calls = (message.tool_calls ?? []) as Array<{ id?: string, function?: { name?: string, arguments?: string } }>
  const usage = readUsage(chunk.usage)
  return {
    content: typeof message.content === 'string' ? message.content : '',
    ...(typeof thinking === 'string' && thinking !== '' && { thinking }),
    ...(calls.length > 0 && { toolCalls: calls.map((c) => ({ ...(c.id !== undefined && { id: c.id }), name: c.function?.name ?? '', arguments: parseArgs(c.function?.arguments ?? '') })) }),
    finishReason: readFinish(chunk.choices?.[0]?.finish_reason),
    ...(usage !== undefined && { usage }),
  }
}
