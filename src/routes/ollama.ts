import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../errors.js'
import {
  OllamaChatBody, OllamaEmbedBody, OllamaGenerateBody, OllamaLegacyEmbeddingsBody,
  decodeOllamaChat, decodeOllamaEmbed, decodeOllamaGenerate,
} from '../protocols/ollama/request.js'
import { chatHandler, underQuota } from './chat-handler.js'
import { clientSignal } from '../relay/client-stream.js'
import { relayEmbed } from '../relay/embed.js'
import { resolveModel } from '../relay/resolve.js'
import { estimateInputTokens } from '../relay/usage.js'

/** The Ollama-compatible chat surface: /api/chat, /api/generate, /api/embed, /api/embeddings. */
export default async function ollamaRoutes (app: FastifyInstance): Promise<void> {
  const { pool, access, relay } = app.gateway

  app.post('/api/chat', { schema: { body: OllamaChatBody } }, chatHandler(app.gateway, 'ollama', 'chat', decodeOllamaChat))
  app.post('/api/generate', { schema: { body: OllamaGenerateBody } }, chatHandler(app.gateway, 'ollama', 'generate', decodeOllamaGenerate))

  app.post<{ Body: OllamaEmbedBody }>('/api/embed', { schema: { body: OllamaEmbedBody } }, async (request, reply) => {
    const model = resolveModel(pool, access, request.principal, request.body.model)
    const job = { kind: 'embed' as const, request: decodeOllamaEmbed(request.body), body: request.body, model }
    return underQuota(app.gateway, request, reply, model, estimateInputTokens(job.request.input), 0, (record) =>
      relayEmbed(pool, relay.retries, job, clientSignal(reply), record))
  })

  app.post<{ Body: OllamaLegacyEmbeddingsBody }>('/api/embeddings', { schema: { body: OllamaLegacyEmbeddingsBody } }, async (request, reply) => {
    const model = resolveModel(pool, access, request.principal, request.body.model)
    if (request.body.prompt === '') throw new GatewayError(400, 'prompt must not be empty')
    const job = { kind: 'embeddings' as const, request: { model: request.body.model, input: [request.body.prompt] }, body: request.body, model }
    return underQuota(app.gateway, request, reply, model, estimateInputTokens(job.request.input), 0, (record) =>
      relayEmbed(pool, relay.retries, job, clientSignal(reply), record))
  })
}
