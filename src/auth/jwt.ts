import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config, Role } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { loadJwtKeys } from './keys.js'

export interface Principal { sub: string, role: Role }

declare module 'fastify' {
  interface FastifyInstance {
    issueToken: (sub: string, role: Role, ttlSeconds: number) => { token: string, expiresAt: Date }
  }
  interface FastifyRequest { principal: Principal }
  interface FastifyContextConfig { public?: boolean }
}

declare module '@fastify/jwt' {
  interface FastifyJWT { user: { sub?: unknown, role?: unknown } }
}

function toAuthError (err: unknown): GatewayError {
  const code = (err as { code?: string }).code
  if (code === 'FST_JWT_NO_AUTHORIZATION_IN_HEADER') return new GatewayError(401, 'missing credentials: send Authorization: Bearer <token>', 'missing_credentials')
  if (code === 'FST_JWT_BAD_REQUEST') return new GatewayError(401, 'malformed Authorization header: expected "Bearer <token>"', 'invalid_api_key')
  if (code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED') return new GatewayError(401, 'token expired', 'token_expired')
  return new GatewayError(401, 'invalid token', 'invalid_api_key')
}

/**
 * Every route needs a valid JWT unless its route config says `public: true`. The algorithm is
 * pinned (no `alg: none`, no HS/RS confusion), `exp` is required, `iss`/`aud` when configured.
 */
export default fp(async function jwtAuth (app: FastifyInstance, opts: { config: Config }) {
  const jwt = opts.config.auth.jwt
  const keys = loadJwtKeys(opts.config)
  await app.register(fastifyJwt, {
    secret: keys.secret,
    sign: { algorithm: jwt.algorithm, ...(jwt.issuer !== undefined && { iss: jwt.issuer }), ...(jwt.audience !== undefined && { aud: jwt.audience }) },
    verify: {
      algorithms: [jwt.algorithm],
      requiredClaims: ['exp', ...(jwt.issuer !== undefined ? ['iss'] : []), ...(jwt.audience !== undefined ? ['aud'] : [])],
      cache: true,
      ...(jwt.issuer !== undefined && { allowedIss: jwt.issuer }),
      ...(jwt.audience !== undefined && { allowedAud: jwt.audience }),
    },
  })

  app.decorate('issueToken', (sub: string, role: Role, ttlSeconds: number) => {
    if (!keys.canSign) throw new GatewayError(503, `issuing tokens needs auth.jwt.privateKeyFile for ${jwt.algorithm}`, 'not_configured')
    const token = app.jwt.sign({ sub, role }, { expiresIn: ttlSeconds })
    return { token, expiresAt: new Date((Math.floor(Date.now() / 1000) + ttlSeconds) * 1000) }
  })

  app.decorateRequest('principal', null as unknown as Principal)
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (request.routeOptions.config.public === true) return
    try {
      await request.jwtVerify()
    } catch (err) {
      throw toAuthError(err)
    }
    const { sub, role } = request.user
    if (typeof sub !== 'string' || sub === '' || (role !== 'user' && role !== 'admin')) {
      throw new GatewayError(401, 'token must carry a sub and a role of "user" or "admin"', 'invalid_api_key')
    }
    request.principal = { sub, role }
  })
}, { name: 'chatgate-jwt' })
