import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Backend } from '../backends/backend.js'
import { managedBackend } from '../backends/managed.js'
import { GatewayError } from '../errors.js'
import { caughtError } from '../http-errors.js'
import { clientSignal } from '../relay/client-stream.js'
import { backendJson } from '../relay/upstream.js'

// Xinference model management for admins, as Xinference's own REST API (and so its Python client,
// `RESTfulClient("https://…", api_key=<ChatGate key>)`) has it: launch, terminate and launch
// progress, on the Xinference backend named by `?backend=` or the only one. The pool learns of a
// launch or a termination before the answer ends, so the model is routable (or gone) at once.
// Describing a model (GET /v1/models/{uid}) is in openai.ts, shared with the OpenAI surface.

// Launching with wait_ready (the client's default) answers once the model is loaded: minutes.
const LAUNCH_TIMEOUT_MS = 60 * 60_000
const PROBE_TIMEOUT_MS = 30_000

function adminOnly (request: FastifyRequest): void {
  if (request.principal.role !== 'admin') throw new GatewayError(403, 'managing Xinference models is for admins only', 'permission_denied')
}

/** One request to the backend; its answer (status, JSON or Xinference's `{"detail"}`) goes back as it is. */
async function forward (backend: Backend, reply: FastifyReply, options: { method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, timeoutMs: number }): Promise<{ status: number, text: string }> {
  const body = options.body === undefined ? undefined : backendJson(options.body)
  let res
  try {
    res = await backend.request({
      method: options.method,
      path: options.path,
      headers: backend.headers(),
      ...(body !== undefined && { body }),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal: clientSignal(reply),
    })
  } catch {
    throw new GatewayError(502, `backend ${backend.name} is unreachable`, 'upstream_unreachable')
  }
  const text = await res.body.text()
  if (res.statusCode === 401 || res.statusCode === 403) throw new GatewayError(502, `backend ${backend.name} refused the gateway's credentials`, 'upstream_error')
  return { status: res.statusCode, text }
}

const send = (reply: FastifyReply, answer: { status: number, text: string }): FastifyReply =>
  reply.code(answer.status).type('application/json').send(answer.text)

const uidPath = (uid: string): string => `/v1/models/${encodeURIComponent(uid)}`

/** GET /v1/models/{uid}?backend=…: the backend's own description, for admins (also of a model still loading). */
export async function describeOnBackend (app: FastifyInstance, request: FastifyRequest<{ Querystring: { backend?: string } }>, reply: FastifyReply, uid: string): Promise<FastifyReply> {
  adminOnly(request)
  const backend = managedBackend(app.gateway.pool.backends, request.query.backend, 'xinference')
  return send(reply, await forward(backend, reply, { method: 'GET', path: uidPath(uid), timeoutMs: PROBE_TIMEOUT_MS }))
}

export default async function xinferenceModelRoutes (app: FastifyInstance): Promise<void> {
  const { pool } = app.gateway
  // Xinference's client reads errors from `detail` (and its constructor needs JSON there).
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = caughtError(err, request)
    if (error.retryAfterSeconds !== undefined) void reply.header('retry-after', String(error.retryAfterSeconds))
    return reply.code(error.statusCode).send({ detail: error.message })
  })

  // The client sends its api_key only to a cluster that says it has auth: ChatGate always does.
  app.get('/v1/cluster/auth', { config: { public: true } }, async () => ({ auth: true }))

  app.post<{ Querystring: { backend?: string, wait_ready?: string } }>('/v1/models', { schema: { body: { type: 'object' } } }, async (request, reply) => {
    adminOnly(request)
    const backend = managedBackend(pool.backends, request.query.backend, 'xinference')
    const waitReady = request.query.wait_ready === undefined ? '' : `?wait_ready=${encodeURIComponent(request.query.wait_ready)}`
    const answer = await forward(backend, reply, { method: 'POST', path: `/v1/models${waitReady}`, body: request.body, timeoutMs: LAUNCH_TIMEOUT_MS })
    if (answer.status < 300) await pool.rediscover(backend)
    return send(reply, answer)
  })

  app.delete<{ Querystring: { backend?: string }, Params: { uid: string } }>('/v1/models/:uid', async (request, reply) => {
    adminOnly(request)
    const backend = managedBackend(pool.backends, request.query.backend, 'xinference')
    const answer = await forward(backend, reply, { method: 'DELETE', path: uidPath(request.params.uid), timeoutMs: PROBE_TIMEOUT_MS })
    if (answer.status < 300) await pool.rediscover(backend)
    return send(reply, answer)
  })

  app.get<{ Querystring: { backend?: string }, Params: { uid: string } }>('/v1/models/:uid/progress', async (request, reply) => {
    adminOnly(request)
    const backend = managedBackend(pool.backends, request.query.backend, 'xinference')
    return send(reply, await forward(backend, reply, { method: 'GET', path: `${uidPath(request.params.uid)}/progress`, timeoutMs: PROBE_TIMEOUT_MS }))
  })
}
