import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { activity, MAX_ACTIVITY_MINUTES } from '../admin/activity.js'
import { poolStatus } from '../admin/status.js'
import { DASHBOARD_CSP, loadUi, notAdminPage } from '../admin/ui.js'
import { requireBrowserLogin } from '../auth/login-gate.js'
import { redactConfig } from '../config/redact.js'
import { GatewayError } from '../errors.js'
import { requireAdmin } from './guards.js'

// The admin dashboard at /admin: a page for admins signed in on the login page, its static files,
// and the JSON it reads beside the existing admin API (/admin/users, /admin/keys, /admin/usage).
// The page calls the API with a short-lived token bound to its browser session, never with the
// cookie itself: the API stays Bearer-only, and the token dies with sign-out.

/** admin-ui/ at the package root, two levels above both src/routes/ and dist/routes/. */
const UI_DIR = new URL('../../admin-ui/', import.meta.url)
/** The page's tokens: short, since it fetches a new one whenever it needs to. */
const SESSION_TOKEN_TTL_SECONDS = 900
/** The page sends it with every token request; a form on another site cannot (the CSRF guard). */
export const DASHBOARD_HEADER = 'x-chatgate-dashboard'

const ActivityQuery = Type.Object({
  minutes: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `a whole number of minutes, 1 to ${MAX_ACTIVITY_MINUTES}` })),
}, { additionalProperties: false })

const badMinutes = (): GatewayError =>
  new GatewayError(400, `invalid query parameter 'minutes': must be ${ActivityQuery.properties.minutes.description!}`, 'invalid_request')

/** Query errors that name the parameter, as the usage routes word them. */
function activityQueryError (errors: FastifySchemaValidationError[]): Error {
  const first = errors[0]!
  if (first.keyword !== 'additionalProperties') return badMinutes()
  return new GatewayError(400, `unknown query parameter '${String(first.params.additionalProperty)}'; known: minutes`, 'invalid_request')
}

/** 403 unless the request came from the dashboard's own script on this very site. */
function requireOwnPage (request: FastifyRequest): void {
  if (request.headers[DASHBOARD_HEADER] !== '1') {
    throw new GatewayError(403, `session tokens are for the dashboard's own page (header ${DASHBOARD_HEADER}: 1)`, 'permission_denied')
  }
  const site = request.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new GatewayError(403, 'a request from another site', 'permission_denied')
  const origin = request.headers.origin
  if (origin === undefined) return
  let host: string | undefined
  try {
    host = new URL(origin).host
  } catch {}
  if (host === undefined || host === '' || host !== request.host) throw new GatewayError(403, `origin ${origin} is not this site`, 'permission_denied')
}

export default async function adminDashboardRoutes (app: FastifyInstance): Promise<void> {
  const ui = loadUi(UI_DIR)
  const startedAt = new Date().toISOString()
  const signedIn = requireBrowserLogin(app, app.gateway.sessions, app.gateway.users)
  const admin = (request: FastifyRequest): void => requireAdmin(request, 'the dashboard')

  // Every answer here is about the current state, or a page that must not be framed or sniffed.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store')
    void reply.header('x-content-type-options', 'nosniff')
    done(null, payload)
  })

  app.get('/admin', { config: { public: true }, onRequest: signedIn }, async (request, reply) => {
    void reply.header('content-security-policy', DASHBOARD_CSP).header('x-frame-options', 'DENY').header('referrer-policy', 'same-origin')
    if (request.principal.role !== 'admin') return reply.code(403).type('text/html; charset=utf-8').send(notAdminPage(request.principal.sub))
    return reply.type('text/html; charset=utf-8').send(ui.page)
  })

  // Only the known files, each its own route: no path from a request ever reaches the disk.
  for (const [name, asset] of ui.assets) {
    app.get(`/admin/assets/${name}`, { config: { public: true } }, async (request, reply) => {
      void reply.header('cache-control', 'no-cache').header('etag', asset.etag)
      if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send()
      return reply.type(asset.type).send(asset.body)
    })
  }

  app.post('/admin/session-token', { config: { public: true }, onRequest: signedIn }, async (request) => {
    requireOwnPage(request)
    admin(request)
    const { sub, sid } = request.principal
    const { token, expiresAt } = app.issueToken(sub, 'admin', SESSION_TOKEN_TTL_SECONDS, sid)
    return { token, expires_at: expiresAt.toISOString(), user: sub }
  })

  app.get('/admin/status', async (request) => {
    admin(request)
    const { config, pool } = app.gateway
    return { startedAt, ...poolStatus(pool), certificates: app.tls?.certificates.status() ?? [], tlsMode: config.tls.mode }
  })

  app.get<{ Querystring: Static<typeof ActivityQuery> }>('/admin/activity', {
    schema: { querystring: ActivityQuery },
    schemaErrorFormatter: activityQueryError,
    // Before the query is looked at: a user learns nothing from a 400.
    onRequest: async (request) => { admin(request) },
  }, async (request) => {
    const minutes = request.query.minutes === undefined ? 60 : Number(request.query.minutes)
    if (minutes < 1 || minutes > MAX_ACTIVITY_MINUTES) throw badMinutes()
    const { db, usage } = app.gateway
    // Requests that just finished wait in the buffer: the charts include them.
    usage.flush()
    return { minutes, buckets: activity(db, minutes) }
  })

  app.get('/admin/config', async (request) => {
    admin(request)
    const { file, succeeded, failed, last, loadedAt } = app.reloads
    return {
      config: redactConfig(app.gateway.config),
      reloads: { file: file ?? null, succeeded, failed, last: last ?? null, loadedAt: new Date(loadedAt).toISOString() },
    }
  })
}
