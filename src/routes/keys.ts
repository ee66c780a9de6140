import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { keyRole, type ApiKey, type NewKey } from '../auth/api-keys.js'
import { parseTtl } from '../auth/ttl.js'
import { USER_NAME_PATTERN } from '../auth/users.js'
import { GatewayError } from '../errors.js'
import { requireAdmin, requireLogin } from './guards.js'

// API keys over REST: admins manage everyone's (/admin/keys), users their own (/v1/me/keys).
// A key is shown once, in the answer that creates it.

const Ttl = Type.String({ pattern: '^[0-9]+[smhd]$', description: 'lifetime, e.g. 90d; none: no expiry' })
const Models = Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'glob patterns; narrows the role, never widens it' })
const Count = Type.Integer({ minimum: 0 })
const Limits = Type.Object({
  requestsPerMinute: Type.Optional(Count),
  tokensPerDay: Type.Optional(Count),
  tokensPerMonth: Type.Optional(Count),
}, { additionalProperties: false, description: "the key's own limits, on top of its owner's; 0 or absent: none" })
const OwnKeyBody = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 200 })),
  models: Type.Optional(Models),
  ttl: Type.Optional(Ttl),
  limits: Type.Optional(Limits),
}, { additionalProperties: false })
const AdminKeyBody = Type.Object({
  owner: Type.String({ minLength: 1, pattern: USER_NAME_PATTERN, description: 'a user of the store or the config file' }),
  role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')], { description: "default: the owner's role" })),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  models: Type.Optional(Models),
  ttl: Type.Optional(Ttl),
  limits: Type.Optional(Limits),
}, { additionalProperties: false })
const IdParams = Type.Object({ id: Type.String({ minLength: 1 }) })

function expiry (ttl: string | undefined): Date | undefined {
  return ttl === undefined ? undefined : new Date(Date.now() + parseTtl(ttl)! * 1000)
}

export default async function keyRoutes (app: FastifyInstance): Promise<void> {
  const { keys, users } = app.gateway
  const admin = (request: FastifyRequest): void => requireAdmin(request, 'managing API keys of others')
  // Keys are managed from a login session: a program's key cannot mint or revoke keys.
  const session = (request: FastifyRequest): void => requireLogin(request, 'API keys')
  const created = (spec: NewKey): Record<string, unknown> => {
    const { key, record } = keys.create(spec)
    return { key, ...record }
  }

  app.post<{ Body: Static<typeof AdminKeyBody> }>('/admin/keys', { schema: { body: AdminKeyBody } }, async (request, reply) => {
    admin(request)
    session(request)
    const { owner, role, name, models, ttl, limits } = request.body
    const spec: NewKey = { owner, role: keyRole(users, owner, role), name, models, expiresAt: expiry(ttl), createdBy: request.principal.sub, limits }
    reply.code(201)
    return created(spec)
  })

  app.get<{ Querystring: { owner?: string } }>('/admin/keys', async (request) => {
    admin(request)
    return { keys: keys.list(request.query.owner) }
  })

  app.delete<{ Params: Static<typeof IdParams> }>('/admin/keys/:id', { schema: { params: IdParams } }, async (request) => {
    admin(request)
    session(request)
    return revoke(request.params.id, undefined)
  })

  app.post<{ Body: Static<typeof OwnKeyBody> }>('/v1/me/keys', { schema: { body: OwnKeyBody } }, async (request, reply) => {
    session(request)
    const { name, models, ttl, limits } = request.body
    reply.code(201)
    return created({ owner: request.principal.sub, role: request.principal.role, name, models, expiresAt: expiry(ttl), createdBy: request.principal.sub, limits })
  })

  app.get('/v1/me/keys', async (request) => ({ keys: keys.list(request.principal.sub) }))

  app.delete<{ Params: Static<typeof IdParams> }>('/v1/me/keys/:id', { schema: { params: IdParams } }, async (request) => {
    session(request)
    return revoke(request.params.id, request.principal.sub)
  })

  function revoke (id: string, owner: string | undefined): ApiKey {
    const key = keys.get(id)
    if (key === undefined || (owner !== undefined && key.owner !== owner)) throw new GatewayError(404, `no API key ${id}`, 'not_found')
    if (!keys.revoke(id)) throw new GatewayError(409, `API key ${id} is already revoked`, 'already_revoked')
    return keys.get(id)!
  }
}
