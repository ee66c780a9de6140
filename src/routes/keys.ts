import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ApiKey, NewKey } from '../auth/api-keys.js'
import { parseTtl } from '../auth/ttl.js'
import { GatewayError } from '../errors.js'

// API keys over REST: admins manage everyone's (/admin/keys), users their own (/v1/me/keys).
// A key is shown once, in the answer that creates it.

const Ttl = Type.String({ pattern: '^[0-9]+[smhd]$', description: 'lifetime, e.g. 90d; none: no expiry' })
const Models = Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'glob patterns; narrows the role, never widens it' })
const OwnKeyBody = Type.Object({ name: Type.Optional(Type.String({ maxLength: 200 })), models: Type.Optional(Models), ttl: Type.Optional(Ttl) }, { additionalProperties: false })
const AdminKeyBody = Type.Object({
  owner: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9._@-]+$' }),
  role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')], { description: 'default user' })),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  models: Type.Optional(Models),
  ttl: Type.Optional(Ttl),
}, { additionalProperties: false })
const IdParams = Type.Object({ id: Type.String({ minLength: 1 }) })

function admin (request: FastifyRequest): void {
  if (request.principal.role !== 'admin') throw new GatewayError(403, 'managing API keys of others is for admins only', 'permission_denied')
}

/** Keys are managed from a login session: a program's key cannot mint or revoke keys. */
function session (request: FastifyRequest): void {
  if (request.principal.keyId !== undefined) throw new GatewayError(403, 'API keys are managed with a login token, not with an API key', 'permission_denied')
}

function expiry (ttl: string | undefined): Date | undefined {
  return ttl === undefined ? undefined : new Date(Date.now() + parseTtl(ttl)! * 1000)
}

export default async function keyRoutes (app: FastifyInstance): Promise<void> {
  const { keys } = app.gateway
  const created = (spec: NewKey): Record<string, unknown> => {
    const { key, record } = keys.create(spec)
    return { key, ...record }
  }

  app.post<{ Body: Static<typeof AdminKeyBody> }>('/admin/keys', { schema: { body: AdminKeyBody } }, async (request, reply) => {
    admin(request)
    session(request)
    const { owner, role, name, models, ttl } = request.body
    reply.code(201)
    return created({ owner, role: role ?? 'user', name, models, expiresAt: expiry(ttl), createdBy: request.principal.sub })
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
    const { name, models, ttl } = request.body
    reply.code(201)
    return created({ owner: request.principal.sub, role: request.principal.role, name, models, expiresAt: expiry(ttl), createdBy: request.principal.sub })
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
