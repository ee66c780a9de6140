import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../errors.js'
import { OpenAIChatBody, OpenAIEmbeddingsBody, decodeOpenAIChat, decodeOpenAIEmbeddings } from '../protocols/openai/request.js'
import { clientSignal } from '../relay/client-stream.js'
import { relayEmbed } from '../relay/embed.js'
import { resolveModel } from '../relay/resolve.js'
import { estimateInputTokens } from '../relay/usage.js'
import { chatHandler, underQuota } from './chat-handler.js'
import { listModels } from './listing.js'
import { describeOnBackend } from './xinference-models.js'

/** The OpenAI-compatible surface: /v1/chat/completions, /v1/embeddings, /v1/models. */
export default async function openaiRoutes (app: FastifyInstance): Promise<void> {
  const { pool, access, relay } = app.gateway

  app.post('/v1/chat/completions', { schema: { body: OpenAIChatBody } }, chatHandler(app.gateway, 'openai', 'chat', decodeOpenAIChat))

  app.post<{ Body: OpenAIEmbeddingsBody }>('/v1/embeddings', { schema: { body: OpenAIEmbeddingsBody } }, async (request, reply) => {
    const model = resolveModel(pool, access, request.principal, request.body.model)
    const job = { kind: 'openai' as const, request: decodeOpenAIEmbeddings(request.body), body: request.body, model }
    return underQuota(app.gateway, request, reply, model, estimateInputTokens(job.request.input), 0, (record) =>
      relayEmbed(pool, relay.retries, job, clientSignal(reply), record))
  })

  app.get('/v1/models', async (request) => {
    const models = await listModels(pool, access, request.principal)
    return { object: 'list', data: models.map((m) => ({ id: m.name, object: 'model', created: m.created, owned_by: m.ownedBy })) }
  })

  // OpenAI's "retrieve model"; for a Xinference model also Xinference's description, so that its
  // client's get_model(uid) works. With ?backend= an admin asks that Xinference backend itself.
  app.get<{ Params: { model: string }, Querystring: { backend?: string } }>('/v1/models/:model', async (request, reply) => {
    if (request.query.backend !== undefined) return describeOnBackend(app, request, reply, request.params.model)
    const models = await listModels(pool, access, request.principal)
    const found = models.find((m) => m.name === request.params.model)
    if (found === undefined) throw new GatewayError(404, `model '${request.params.model}' not found`, 'model_not_found')
    return { ...found.description, id: found.name, object: 'model', created: found.created, owned_by: found.ownedBy }
  })
}
