import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Backend } from '../backends/backend.js'
import { managedBackend } from '../backends/managed.js'
import { GatewayError } from '../errors.js'
import { OllamaModelNameBody } from '../protocols/ollama/request.js'
import { clientSignal } from '../relay/client-stream.js'
import { resolveModel } from '../relay/resolve.js'
import { backendJson, refusal } from '../relay/upstream.js'
import { listModels } from './listing.js'

const PROBE = { headersTimeout: 5000, bodyTimeout: 5000 }
const FAR_FUTURE = '2318-01-01T00:00:00Z'

/** The Ollama model-information and model-management surface. */
export default async function ollamaModelRoutes (app: FastifyInstance): Promise<void> {
  const { pool, access } = app.gateway

  // Ollama's CLI and Open WebUI probe `/` to see if a server is there.
  app.get('/', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('Ollama is running'))

  app.get('/api/version', async () => {
    // The oldest Ollama in the pool: what a client can rely on everywhere.
    const versions = pool.backends.map((b) => b.version).filter((v): v is string => v !== undefined)
    const compare = (a: string, b: string): number => a.localeCompare(b, undefined, { numeric: true })
    return { version: versions.sort(compare)[0] ?? '0.0.0' }
  })

  app.get('/api/tags', async (request) => {
    const models = await listModels(pool, access, request.principal)
    return { models: models.map((m) => m.tag) }
  })

  app.get('/api/ps', async (request) => {
    const who = request.principal
    const running: unknown[] = []
    await Promise.all(pool.backends.map(async (b) => {
      if (b.protocol !== 'ollama') {
        for (const [key, entry] of b.models) {
          if (key === entry.upstream && access.allows(who, key)) running.push({ name: key, model: key, size: 0, digest: '', details: {}, expires_at: FAR_FUTURE, size_vram: 0 })
        }
        return
      }
      try {
        const res = await b.request({ method: 'GET', path: '/api/ps', headers: b.headers(), ...PROBE })
        const body = await res.body.json() as { models?: Array<{ name?: string }> }
        for (const m of body.models ?? []) if (access.allows(who, String(m.name))) running.push(m)
      } catch {
        // A backend that does not answer has nothing running that we could reach.
      }
    }))
    return { models: running }
  })

  app.post<{ Body: OllamaModelNameBody }>('/api/show', { schema: { body: OllamaModelNameBody } }, async (request, reply) => {
    const requested = request.body.model ?? request.body.name
    if (requested === undefined) throw new GatewayError(400, 'model is required')
    const model = resolveModel(pool, access, request.principal, requested)
    const backend = (await pool.servers(model))[0]
    const entry = backend?.lookup(model)
    if (backend === undefined || entry === undefined) throw new GatewayError(404, `model '${requested}' not found`, 'model_not_found')
    if (backend.protocol === 'ollama') {
      return forward(backend, 'POST', '/api/show', { ...request.body, model: entry.upstream, name: undefined }, reply)
    }
    const listing = entry.listing
    const abilities = Array.isArray(listing.model_ability) ? listing.model_ability as string[] : ['chat']
    return {
      modelfile: '',
      parameters: '',
      template: '',
      details: { parent_model: '', format: String(listing.model_format ?? ''), family: String(listing.model_family ?? ''), families: null, parameter_size: String(listing.model_size_in_billions ?? ''), quantization_level: String(listing.quantization ?? '') },
      model_info: typeof listing.context_length === 'number' ? { 'general.context_length': listing.context_length } : {},
      capabilities: ['completion', ...(abilities.includes('vision') ? ['vision'] : []), ...(abilities.includes('tools') ? ['tools'] : [])],
    }
  })

  // Model management changes what a GPU holds: admins only, to one named Ollama backend.
  const manage = (method: 'POST' | 'DELETE', path: string) => async (request: FastifyRequest<{ Querystring: { backend?: string } }>, reply: FastifyReply) => {
    if (request.principal.role !== 'admin') throw new GatewayError(403, `${path} is for admins only`, 'permission_denied')
    const backend = managedBackend(pool.backends, request.query.backend, 'ollama')
    // The answer ends only once the pool has seen the change, so a listing right after shows it.
    return forward(backend, method, path, request.body, reply, () => pool.rediscover(backend))
  }
  const bodyIsObject = { schema: { body: { type: 'object' } } }
  app.post('/api/pull', bodyIsObject, manage('POST', '/api/pull'))
  app.post('/api/create', bodyIsObject, manage('POST', '/api/create'))
  app.post('/api/copy', bodyIsObject, manage('POST', '/api/copy'))
  app.delete('/api/delete', bodyIsObject, manage('DELETE', '/api/delete'))
}

/**
 * Sends a request to one backend and streams its answer back as it is (pull progress included);
 * `beforeEnd` runs after the last upstream byte and before the response ends.
 */
async function forward (backend: Backend, method: 'POST' | 'DELETE', path: string, body: unknown, reply: FastifyReply, beforeEnd?: () => Promise<void>): Promise<FastifyReply> {
  const sent = backendJson(body)
  let res
  try {
    res = await backend.request({ method, path, headers: backend.headers(), body: sent, signal: clientSignal(reply) })
  } catch {
    throw new GatewayError(502, `backend ${backend.name} is unreachable`, 'upstream_unreachable')
  }
  if (res.statusCode >= 400 && res.statusCode !== 404) throw (await refusal(backend, res)).error
  const type = res.headers['content-type']
  reply.code(res.statusCode).header('x-accel-buffering', 'no')
  if (typeof type === 'string') reply.type(type)
  const upstream = res.body
  async function * relay (): AsyncGenerator<Buffer> {
    for await (const chunk of upstream) yield chunk as Buffer
    await beforeEnd?.()
  }
  return reply.send(Readable.from(relay(), { objectMode: false }))
}
