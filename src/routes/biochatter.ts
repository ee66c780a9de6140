import { credentialOf } from '../auth/credentials.js'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { BioChatterUpstream } from '../backends/biochatter-upstream.js'
import { GatewayError } from '../errors.js'
import { caughtError } from '../http-errors.js'
import { NextChatBody, TokenUsageBody, decodeNextChat } from '../protocols/biochatter/request.js'
import { CODE_OK, CODE_UNKNOWN, nextError } from '../protocols/biochatter/response.js'
import { relayChat } from '../relay/chat.js'
import { resolveModel } from '../relay/resolve.js'
import { estimatePromptTokens } from '../relay/usage.js'
import { SessionTokens } from '../usage/session-tokens.js'
import { underQuota } from './chat-handler.js'

// The BioChatter Next server API (biocypher/biochatter-server), answered by ChatGate: chats go
// to the pool, token usage comes from ChatGate's usage records, RAG and KG go to an upstream
// biochatter-server when one is configured. Every answer is HTTP 200 JSON with a `code`, as the
// frontend reads it.

const RAG_ROUTES: Array<{ method: 'POST' | 'DELETE', path: string }> = [
  { method: 'POST', path: '/v1/rag/newdocument' },
  { method: 'POST', path: '/v1/rag/alldocuments' },
  { method: 'DELETE', path: '/v1/rag/document' },
]
const STATUS_ROUTES = ['/v1/rag/connectionstatus', '/v1/kg/connectionstatus']

/** Answers ChatGate's refusals (401, 429, 404 model…) in the frontend's error form. */
function sendNextError (request: FastifyRequest, reply: FastifyReply, err: GatewayError): FastifyReply {
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
  // The request log keeps the real status; the frontend only understands 200.
  request.refusedWith = err.statusCode
  request.refusedBy = err.limit
  return reply.code(200).type('application/json; charset=utf-8').send(nextError(err))
}

async function nextApi (app: FastifyInstance): Promise<void> {
  const gateway = app.gateway
  const config = gateway.config.biochatter
  const sessionTokens = new SessionTokens(gateway.db)
  const upstream = config.upstream === undefined ? undefined : new BioChatterUpstream(config.upstream, config.upstreamTimeoutMs)

  app.setErrorHandler((err: FastifyError, request, reply) => sendNextError(request, reply, caughtError(err, request)))
  app.setNotFoundHandler((request, reply) =>
    sendNextError(request, reply, new GatewayError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'route_not_found')))

  // The Next server adds ?path=v1&path=chat&path=completions (its catch-all route's parameters);
  // the query string is not read.
  app.post<{ Body: NextChatBody }>('/v1/chat/completions', { schema: { body: NextChatBody } }, async (request, reply) => {
    const chat = decodeNextChat(request.body)
    const model = resolveModel(gateway.pool, gateway.access, request.principal, chat.model)
    const session = request.body.session_id
    await underQuota(gateway, request, reply, model, estimatePromptTokens(chat), gateway.quotas.completionBound(undefined), (record) => {
      if (session !== undefined && session !== '') record.session = session
      return relayChat(gateway.relay, { surface: 'biochatter', kind: 'chat', request: chat, body: request.body, model }, reply, record)
    })
    return reply
  })

  // Called on page load and after each reply with the browser's Authorization, usually empty.
  // With credentials: the caller's own tokens today (for the session and model when named).
  // Without: the named chat session's tokens today (its id is a random id only that browser
  // holds), never anyone's totals; with no session either, zeros.
  app.post<{ Body: TokenUsageBody }>('/v1/tokenusage', { schema: { body: TokenUsageBody }, config: { public: true } }, async (request) => {
    const hasCredentials = credentialOf(request) !== undefined
    if (hasCredentials) app.authenticate(request)
    const model = request.body?.model ?? undefined
    const session = request.body?.session_id ?? undefined
    const named = session === undefined || session === '' ? undefined : session
    gateway.usage.flush()
    let tokens
    let authType
    if (hasCredentials) {
      tokens = sessionTokens.today({ user: request.principal.sub, session: named, model })
      authType = 'ClientOpenAI'
    } else if (named !== undefined) {
      tokens = sessionTokens.today({ session: named, model })
      authType = 'ServerOpenAI'
    } else {
      tokens = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }
      authType = 'Unknown'
    }
    return { code: CODE_OK, tokens: { ...tokens, ...(model !== undefined && { model }) }, auth_type: authType }
  })

  for (const route of RAG_ROUTES) {
    app.route({
      method: route.method,
      url: route.path,
      config: { public: config.ragAuth === 'none' },
      handler: async (request) => {
        if (upstream === undefined) return { error: 'no RAG server configured: set biochatter.upstream to a biochatter-server', code: CODE_UNKNOWN }
        return (await upstream.call(route.method, route.path, request.bodyText)).body
      },
    })
  }
  for (const path of STATUS_ROUTES) {
    app.post(path, { config: { public: true } }, async (request) => {
      if (upstream === undefined) return { status: 'disconnected', code: CODE_OK }
      const answer = await upstream.call('POST', path, request.bodyText)
      return answer.failed ? { status: 'disconnected', code: CODE_OK } : answer.body
    })
  }
}

export default async function biochatterRoutes (app: FastifyInstance): Promise<void> {
  const config = app.gateway.config.biochatter
  if (!config.enabled) return
  await app.register(nextApi, { prefix: config.prefix })
}
