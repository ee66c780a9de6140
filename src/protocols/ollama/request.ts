import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { toBase64Image } from '../images.js'
import type { ChatMessage, ChatRequest, EmbedRequest, SamplingOptions, ToolCall } from '../internal.js'

// Request bodies of the Ollama surface (api/types.go). Unknown fields stay for pass-through.
// Go's encoding/json takes null for any field as "not set", and clients send it: LangChain's
// ChatOllama (BioChatter's) sends every option it knows, unset ones as null.

const Nullable = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))

const Message = Type.Object({
  role: Type.String({ minLength: 1 }),
  content: Nullable(Type.String()),
  images: Nullable(Type.Array(Type.String())),
  tool_calls: Nullable(Type.Array(Type.Object({ function: Type.Object({ name: Type.String(), arguments: Type.Optional(Type.Unknown()) }) }))),
})

const Common = {
  model: Type.String({ minLength: 1 }),
  stream: Nullable(Type.Boolean()),
  format: Nullable(Type.Union([Type.Literal('json'), Type.Literal(''), Type.Object({})])),
  options: Nullable(Type.Object({ num_predict: Nullable(Type.Integer()), stop: Nullable(Type.Array(Type.String())) })),
  keep_alive: Nullable(Type.Union([Type.String(), Type.Number()])),
  think: Nullable(Type.Union([Type.Boolean(), Type.String()])),
}

export const OllamaChatBody = Type.Object({ ...Common, messages: Type.Array(Message), tools: Nullable(Type.Array(Type.Object({}))) })
export type OllamaChatBody = Static<typeof OllamaChatBody> & Record<string, unknown>

export const OllamaGenerateBody = Type.Object({
  ...Common,
  prompt: Nullable(Type.String()),
  system: Nullable(Type.String()),
  images: Nullable(Type.Array(Type.String())),
})
export type OllamaGenerateBody = Static<typeof OllamaGenerateBody> & Record<string, unknown>

export const OllamaEmbedBody = Type.Object({
  model: Type.String({ minLength: 1 }),
  input: Type.Union([Type.String(), Type.Array(Type.String())]),
  dimensions: Type.Optional(Type.Integer({ minimum: 1 })),
})
export type OllamaEmbedBody = Static<typeof OllamaEmbedBody> & Record<string, unknown>

export const OllamaLegacyEmbeddingsBody = Type.Object({ model: Type.String({ minLength: 1 }), prompt: Type.String() })
export type OllamaLegacyEmbeddingsBody = Static<typeof OllamaLegacyEmbeddingsBody> & Record<string, unknown>

// /api/show, /api/pull, /api/delete take `model` or the older `name`.
export const OllamaModelNameBody = Type.Object({ model: Type.Optional(Type.String({ minLength: 1 })), name: Type.Optional(Type.String({ minLength: 1 })) })
export type OllamaModelNameBody = Static<typeof OllamaModelNameBody> & Record<string, unknown>

const KNOWN_OPTIONS = new Set(['temperature', 'top_p', 'top_k', 'seed', 'stop', 'num_predict', 'frequency_penalty', 'presence_penalty'])

function decodeOptions (options: Record<string, unknown> | undefined): { options: SamplingOptions, extraOptions?: Record<string, unknown> } {
  const o = options ?? {}
  const num = (k: string): number | undefined => typeof o[k] === 'number' ? o[k] : undefined
  const extra = Object.fromEntries(Object.entries(o).filter(([k]) => !KNOWN_OPTIONS.has(k)))
  return {
    options: {
      temperature: num('temperature'),
      top_p: num('top_p'),
      top_k: num('top_k'),
      seed: num('seed'),
      stop: Array.isArray(o.stop) ? o.stop as string[] : undefined,
      max_tokens: num('num_predict') !== undefined && num('num_predict')! > 0 ? num('num_predict') : undefined,
      frequency_penalty: num('frequency_penalty'),
      presence_penalty: num('presence_penalty'),
    },
    ...(Object.keys(extra).length > 0 && { extraOptions: extra }),
  }
}

interface OllamaMessage { role: string, content?: string | null, images?: string[] | null, thinking?: string, tool_calls?: Array<{ id?: string, function: { name: string, arguments?: unknown } }> | null, tool_name?: string, tool_call_id?: string }

function decodeMessage (m: OllamaMessage): ChatMessage {
  const message: ChatMessage = { role: m.role.toLowerCase(), content: m.content ?? '' }
  if (Array.isArray(m.images) && m.images.length > 0) message.images = m.images
  if (typeof m.thinking === 'string' && m.thinking !== '') message.thinking = m.thinking
  if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
    message.toolCalls = m.tool_calls.map((c): ToolCall => ({ ...(c.id !== undefined && { id: c.id }), name: c.function.name, arguments: c.function.arguments ?? {} }))
  }
  if (typeof m.tool_name === 'string') message.toolName = m.tool_name
  if (typeof m.tool_call_id === 'string') message.toolCallId = m.tool_call_id
  return message
}

function decodeCommon (body: OllamaChatBody | OllamaGenerateBody): Omit<ChatRequest, 'messages'> {
  return {
    model: body.model,
    stream: body.stream !== false, // Ollama streams unless told not to
    includeUsage: false,
    ...(body.format === 'json' ? { format: 'json' as const } : typeof body.format === 'object' && body.format !== null ? { format: body.format as Record<string, unknown> } : {}),
    ...(body.think != null && { think: body.think }),
    ...(body.keep_alive != null && { keepAlive: body.keep_alive }),
    ...decodeOptions(body.options as Record<string, unknown> | undefined),
  }
}

export function decodeOllamaChat (body: OllamaChatBody): ChatRequest {
  return {
    ...decodeCommon(body),
    messages: (body.messages as OllamaMessage[]).map(decodeMessage),
    ...(body.tools != null && { tools: body.tools }),
  }
}

export function decodeOllamaGenerate (body: OllamaGenerateBody): ChatRequest {
  const messages: ChatMessage[] = []
  if (typeof body.system === 'string' && body.system !== '') messages.push({ role: 'system', content: body.system })
  const images = Array.isArray(body.images) && body.images.length > 0 ? { images: body.images } : {}
  messages.push({ role: 'user', content: body.prompt ?? '', ...images })
  return { ...decodeCommon(body), messages }
}

export function decodeOllamaEmbed (body: OllamaEmbedBody): EmbedRequest {
  return { model: body.model, input: typeof body.input === 'string' ? [body.input] : body.input, ...(body.dimensions !== undefined && { dimensions: body.dimensions }) }
}

/** The body for an Ollama backend's /api/chat. */
export function encodeOllamaChat (req: ChatRequest, upstreamModel: string): Record<string, unknown> {
  const o = req.options
  const options: Record<string, unknown> = {
    ...req.extraOptions,
    temperature: o.temperature,
    top_p: o.top_p,
    top_k: o.top_k,
    seed: o.seed,
    stop: o.stop,
    num_predict: o.max_tokens,
    frequency_penalty: o.frequency_penalty,
    presence_penalty: o.presence_penalty,
  }
  for (const key of Object.keys(options)) if (options[key] === undefined) delete options[key]
  const body: Record<string, unknown> = {
    model: upstreamModel,
    messages: req.messages.map((m) => ({
      role: m.role,
      content: m.content,
      ...(m.images !== undefined && { images: m.images.map(toBase64Image) }),
      ...(m.thinking !== undefined && { thinking: m.thinking }),
      ...(m.toolCalls !== undefined && { tool_calls: m.toolCalls.map((c) => ({ ...(c.id !== undefined && { id: c.id }), function: { name: c.name, arguments: c.arguments } })) }),
      ...(m.toolName !== undefined && { tool_name: m.toolName }),
      ...(m.toolCallId !== undefined && { tool_call_id: m.toolCallId }),
    })),
    stream: req.stream,
  }
  if (req.tools !== undefined) body.tools = req.tools
  if (req.format !== undefined) body.format = req.format
  if (req.think !== undefined) body.think = req.think
  if (req.keepAlive !== undefined) body.keep_alive = req.keepAlive
  if (Object.keys(options).length > 0) body.options = options
  return body
}
