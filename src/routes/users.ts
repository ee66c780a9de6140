import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { EMAIL_PATTERN, USER_NAME_PATTERN, type User } from '../auth/users.js'
import { GatewayError } from '../errors.js'
import { requireAdmin, requireLogin } from './guards.js'

// Store users over REST, for admins with a login token. Config-file users are listed (marked
// `source: 'config'`) but changed only in the file. Answers never include a password hash.

const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')])
const Email = Type.String({ pattern: EMAIL_PATTERN, maxLength: 320 })
const Password = Type.String({ minLength: 1, maxLength: 1024, description: 'at least 8 characters (checked by Users)' })
const NewUserBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, pattern: USER_NAME_PATTERN }),
  password: Password,
  role: Type.Optional(Role),
  email: Type.Optional(Email),
}, { additionalProperties: false })
const ChangeBody = Type.Object({
  enabled: Type.Optional(Type.Boolean()),
  role: Type.Optional(Role),
  email: Type.Optional(Type.Union([Email, Type.Null()], { description: 'null removes it' })),
}, { additionalProperties: false, minProperties: 1 })
const PasswordBody = Type.Object({ password: Password }, { additionalProperties: false })
const NameParams = Type.Object({ name: Type.String({ minLength: 1 }) })

function manager (request: FastifyRequest): void {
  requireAdmin(request, 'managing users')
  requireLogin(request, 'users')
}

export default async function userRoutes (app: FastifyInstance): Promise<void> {
  const { users } = app.gateway
  const known = (name: string): User => {
    const user = users.get(name)
    if (user === undefined) throw new GatewayError(404, `unknown user '${name}'`, 'user_not_found')
    return user
  }

  app.post<{ Body: Static<typeof NewUserBody> }>('/admin/users', { schema: { body: NewUserBody } }, async (request, reply) => {
    manager(request)
    const user = await users.add(request.body)
    reply.code(201)
    return user
  })

  app.get('/admin/users', async (request) => {
    manager(request)
    return { users: users.list() }
  })

  app.get<{ Params: Static<typeof NameParams> }>('/admin/users/:name', { schema: { params: NameParams } }, async (request) => {
    manager(request)
    return known(request.params.name)
  })

  app.patch<{ Params: Static<typeof NameParams>, Body: Static<typeof ChangeBody> }>('/admin/users/:name', { schema: { params: NameParams, body: ChangeBody } }, async (request) => {
    manager(request)
    return users.update(request.params.name, request.body)
  })

  app.put<{ Params: Static<typeof NameParams>, Body: Static<typeof PasswordBody> }>('/admin/users/:name/password', { schema: { params: NameParams, body: PasswordBody } }, async (request) => {
    manager(request)
    return users.resetPassword(request.params.name, request.body.password)
  })
}
