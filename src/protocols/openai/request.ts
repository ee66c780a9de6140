import { Type, type Static } from '@sinclair/typebox'
import { GatewayError } from '../../errors.js'
import { fromImageUrl, toImageUrl } from '../images.js'
import type { ChatMessage, ChatRequest, EmbedRequest, ToolCall } from '../internal.js'

// Request bodies of the OpenAI surface. Only what the gateway reads is checked; other fields are
// kept for pass-through to OpenAI-compatible backends.

const Content = Type.Union([Type.String(), Type.Null(), Type.Array(Type.Object({ type: Type.String() }))])

export const OpenAIChatBody = Type.Object({
  model: Type.String({ minLength: 1 }),
  messages: Type.Array(Type.Object({ role: Type.String({ minLength: 1 }), content: Type.Optional(Content) }), { minItems: 1 }),
  stream: Type.Optional(Type.Boolean()),
  stream_options: Type.Optional(Type.Union([Type.Null(), Type.Object({ include_usage: Type.Optional(Type.Boolean()) })])),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()])),
  tools: Type.Optional(Type.Array(Type.Object({ type: Type.String() }))),
})
export type OpenAIChatBody = Static<typeof OpenAIChatBody> & Record<string, unknown>

export const OpenAIEmbeddingsBody = Type.Object({
  model: Type.String({ minLength: 1 }),
  input: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 }), Type.Array(Type.Integer()), Type.Array(Type.Array(Type.Integer()))]),
  encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
  dimensions: Type.Optional(Type.Integer({ minimum: 1 })),
})
export type OpenAIEmbeddingsBody = Static<typeof OpenAIEmbeddingsBody> & Record<string, unknown>

interface OpenAIPart { type: string, text?: string, image_url?: string | { url?: string } }
interface OpenAIToolCall { id?: string, function?: { name?: string, arguments?: string } }
interface OpenAIMessage { role: string, content?: string | null | OpenAIPart[], tool_calls?: OpenAIToolCall[], tool_call_id?: string, name?: string, reasoning_content?: string, reasoning?: string }

function decodeToolCall (call: OpenAIToolCall): ToolCall {
  const name = call.function?.name
  if (typeof name !== 'string') throw new GatewayError(400, 'tool_calls[].function.name is required')
  const raw = call.function?.arguments ?? '{}'
  let args: unknown
  try {
    args = JSON.parse(raw === '' ? '{}' : raw)
  } catch {
    throw new GatewayError(400, `tool call "${name}": arguments must be a JSON string`)
  }
  return { ...(call.id !== undefined && { id: call.id }), name, arguments: args }
}

function decodeMessage (m: OpenAIMessage, earlier: ChatMessage[]): ChatMessage {
  const message: ChatMessage = { role: m.role, content: '' }
  if (Array.isArray(m.content)) {
    const texts: string[] = []
    for (const part of m.content) {
      if (part.type === 'text') texts.push(part.text ?? '')
      else if (part.type === 'image_url') {
        const url = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url
        if (typeof url !== 'string') throw new GatewayError(400, 'image_url part needs a url')
        ;(message.images ??= []).push(fromImageUrl(url))
      } else throw new GatewayError(400, `content part type "${part.type}" is not supported`)
    }
    message.content = texts.join('\n')
  } else message.content = m.content ?? ''
  const thinking = m.reasoning_content ?? m.reasoning
  if (typeof thinking === 'string' && thinking !== '') message.thinking = thinking
  if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) message.toolCalls = m.tool_calls.map(decodeToolCall)
  if (typeof m.tool_call_id === 'string') {
    message.toolCallId = m.tool_call_id
    const call = earlier.flatMap((e) => e.toolCalls ?? []).find((c) => c.id === m.tool_call_id)
    if (call !== undefined) message.toolName = call.name
  }
  return message
}

function decodeStop (stop: unknown): string[] | undefined {
  if (typeof stop === 'string') return [stop]
  if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) return stop
  return undefined
}

function decodeFormat (rf: unknown): ChatRequest['format'] {
  const format = rf as { type?: string, json_schema?: { schema?: Record<string, unknown> } } | undefined
  if (format?.type === 'json_object') return 'json'
  if (format?.type === 'json_schema' && format.json_schema?.schema !== undefined) return format.json_schema.schema
  return undefined
}

const num = (v: unknown): number | undefined => typeof v === 'number' ? v : undefined

export function decodeOpenAIChat (body: OpenAIChatBody): ChatRequest {
  const messages: ChatMessage[] = []
  for (const m of body.messages as OpenAIMessage[]) messages.push(decodeMessage(m, messages))
  const reasoning = body.reasoning_effort ?? (body.reasoning as { effort?: unknown } | undefined)?.effort
  return {
    model: body.model,
    messages,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    ...(body.tools !== undefined && { tools: body.tools }),
    ...(body.tool_choice !== undefined && { toolChoice: body.tool_choice }),
    ...(decodeFormat(body.response_format) !== undefined && { format: decodeFormat(body.response_format) }),
    ...(typeof reasoning === 'string' && { think: reasoning }),
    options: {
      temperature: num(body.temperature),
      top_p: num(body.top_p),
      top_k: num(body.top_k),
      seed: num(body.seed),
      stop: decodeStop(body.stop),
      max_tokens: num(body.max_completion_tokens) ?? num(body.max_tokens),
      frequency_penalty: num(body.frequency_penalty),
      presence_penalty: num(body.presence_penalty),
    },
  }
}

export function decodeOpenAIEmbeddings (body: OpenAIEmbeddingsBody): EmbedRequest {
  const input = typeof body.input === 'string' ? [body.input] : body.input
  if (!input.every((i) => typeof i === 'string')) {
    throw new GatewayError(400, 'token-array input is only supported by OpenAI-compatible backends; send text')
  }
  return { model: body.model, input: input as string[], ...(body.dimensions !== undefined && { dimensions: body.dimensions }) }
}

/** Ids for tool calls that came without one (Ollama), so tool results can refer to them. */
function withToolCallIds (messages: ChatMessage[]): ChatMessage[] {
  const pending: ToolCall[] = []
  return messages.map((m, mi) => {
    if (m.toolCalls !== undefined) {
      const toolCalls = m.toolCalls.map((c, ci) => ({ ...c, id: c.id ?? `call_${mi}_${ci}` }))
      pending.push(...toolCalls)
      return { ...m, toolCalls }
    }
    if (m.role === 'tool' && m.toolCallId === undefined) {
      const i = pending.findIndex((c) => m.toolName === undefined || c.name === m.toolName)
      const match = i === -1 ? undefined : pending.splice(i, 1)[0]
      return match === undefined ? m : { ...m, toolCallId: match.id }
    }
    return m
  })
}

function encodeMessage (m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role }
  out.content = m.images === undefined || m.images.length === 0
    ? m.content
    : [{ type: 'text', text: m.content }, ...m.images.map((img) => ({ type: 'image_url', image_url: { url: toImageUrl(img) } }))]
  if (m.toolCalls !== undefined) {
    out.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments ?? {}) } }))
  }
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId
  return out
}

/** The body for an OpenAI-compatible backend (Xinference adds its thinking switch). */
export function encodeOpenAIChat (req: ChatRequest, upstreamModel: string, flavor: 'openai' | 'xinference'): Record<string, unknown> {
  const o = req.options
  const body: Record<string, unknown> = {
    model: upstreamModel,
    messages: withToolCallIds(req.messages).map(encodeMessage),
    stream: req.stream,
    // Always ask for usage: accounting needs it; the client only sees it when it asked.
    ...(req.stream && { stream_options: { include_usage: true } }),
    temperature: o.temperature,
    top_p: o.top_p,
    top_k: o.top_k,
    seed: o.seed,
    stop: o.stop,
    max_tokens: o.max_tokens,
    frequency_penalty: o.frequency_penalty,
    presence_penalty: o.presence_penalty,
    tools: req.tools,
    tool_choice: req.toolChoice,
  }
  if (req.format === 'json') body.response_format = { type: 'json_object' }
  else if (req.format !== undefined) body.response_format = { type: 'json_schema', json_schema: { name: 'response', schema: req.format } }
  if (typeof req.think === 'string') body.reasoning_effort = req.think
  else if (typeof req.think === 'boolean' && flavor === 'xinference') body.chat_template_kwargs = { enable_thinking: req.think }
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
  return body
}
