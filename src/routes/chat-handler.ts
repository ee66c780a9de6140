import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.js'
import type { Surface } from '../errors.js'
import type { ChatRequest } from '../protocols/internal.js'
import type { OllamaKind } from '../protocols/ollama/response.js'
import { relayChat } from '../relay/chat.js'
import { resolveModel } from '../relay/resolve.js'
import { estimatePromptTokens, partialUsage, settled, type ChatRecord } from '../relay/usage.js'

/**
 * Runs a model request under the caller's quotas: holds `promptEstimate + completionBound`
 * tokens (429 when that does not fit), then settles the hold with what was really used.
 * `request.chat` is the record the request log and usage accounting read.
 */
export async function underQuota<T> (gateway: Gateway, request: FastifyRequest, reply: FastifyReply, model: string, promptEstimate: number, completionBound: number, run: (record: ChatRecord) => Promise<T>): Promise<T> {
  const record: ChatRecord = { model, attempts: 0, inFlight: true }
  request.chat = record
  let hold
  try {
    const held = gateway.quotas.hold(request.principal, promptEstimate + completionBound, reply)
    hold = held instanceof Promise ? await held : held
    return await run(record)
  } finally {
    partialUsage(record, promptEstimate)
    const settling = hold?.settle(record)
    if (settling instanceof Promise) await settling
    settled(record)
  }
}

/** The handler every chat route shares: decode its body, check the model, relay. */
export function chatHandler<Body extends Record<string, unknown>> (gateway: Gateway, surface: Surface, kind: OllamaKind, decode: (body: Body) => ChatRequest) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    // The route's schema has validated the body into this shape.
    const body = request.body as Body
    const chat = decode(body)
    const model = resolveModel(gateway.pool, gateway.access, request.principal, chat.model)
    const completionBound = gateway.quotas.completionBound(chat.options.max_tokens)
    await underQuota(gateway, request, reply, model, estimatePromptTokens(chat), completionBound, (record) =>
      relayChat(gateway.relay, { surface, kind, request: chat, body, text: request.bodyText, model }, reply, record))
    return reply
  }
}
