import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.js'
import type { Surface } from '../errors.js'
import type { ChatRequest } from '../protocols/internal.js'
import type { OllamaKind } from '../protocols/ollama/response.js'
import { relayChat } from '../relay/chat.js'
import { resolveModel } from '../relay/resolve.js'

/** The handler every chat route shares: decode its body, check the model, relay. */
export function chatHandler<Body extends Record<string, unknown>> (gateway: Gateway, surface: Surface, kind: OllamaKind, decode: (body: Body) => ChatRequest) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    // The route's schema has validated the body into this shape.
    const body = request.body as Body
    const chat = decode(body)
    const model = resolveModel(gateway.pool, gateway.access, request.principal, chat.model)
    request.chat = { model, attempts: 0 }
    await relayChat(gateway.relay, { surface, kind, request: chat, body, text: request.bodyText, model }, reply, request.chat)
    return reply
  }
}
