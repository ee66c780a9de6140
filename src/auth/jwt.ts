import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config, Role } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { KEY_PREFIX, type ApiKeys, type KeyLimits } from './api-keys.js'
import { loadJwtKeys } from './keys.js'

/** Who is calling: a user with a JWT, or a program with an API key (acting for its owner). */
export interface Principal { sub: string, role: Role, keyId?: string, models?: string[], keyLimits?: KeyLimits }

declare module 'fastify' {
  interface FastifyInstance {
    issueToken: (sub: string, role: Role, ttlSeconds: number) => { token: string, expiresAt: Date }
  }
  interface FastifyRequest { principal: Principal }
  interface FastifyContextConfig { public?: boolean }
}

const VERIFIED_CACHE_SIZE = 10_000
const BEARER = /^Bearer +([^\s]+) *$/i

function toAuthError (err: unknown): GatewayError {
  const code = (err as { code?: string }).code
  if (code === 'FAST_JWT_EXPIRED') return new GatewayError(401, 'token expired', 'token_expired')
  return new GatewayError(401, 'invalid token', 'invalid_api_key')
}

/** The bearer token (or `x-api-key`) of a request, or a 401 saying what is wrong with the header. */
function bearerToken (request: FastifyRequest): string {
  const header = request.headers.authorization
  const apiKey = request.headers['x-api-key']
  if ((header === undefined || header === '') && typeof apiKey === 'string' && apiKey !== '') return apiKey
  if (header === undefined || header === '') throw new GatewayError(401, 'missing credentials: send Authorization: Bearer <token or API key>', 'missing_credentials')
  const match = BEARER.exec(header)
  if (match === null) throw new GatewayError(401, 'malformed Authorization header: expected "Bearer <token>"', 'invalid_api_key')
  return match[1]!
}

/**
 * Every route needs a valid JWT unless its route config says `public: true`. The algorithm is
 * pinned (no `alg: none`, no HS/RS confusion), `exp` is required, `iss`/`aud` when configured.
 */
export default fp(async function jwtAuth (app: FastifyInstance, opts: { config: Config, keys?: ApiKeys }) {
  const jwt = opts.config.auth.jwt
  const keys = loadJwtKeys(opts.config)
  await app.register(fastifyJwt, {
    secret: keys.secret,
    sign: { algorithm: jwt.algorithm, ...(jwt.issuer !== undefined && { iss: jwt.issuer }), ...(jwt.audience !== undefined && { aud: jwt.audience }) },
    verify: {
      algorithms: [jwt.algorithm],
      requiredClaims: ['exp', ...(jwt.issuer !== undefined ? ['iss'] : []), ...(jwt.audience !== undefined ? ['aud'] : [])],
      ...(jwt.issuer !== undefined && { allowedIss: jwt.issuer }),
      ...(jwt.audience !== undefined && { allowedAud: jwt.audience }),
    },
  })

  app.decorate('issueToken', (sub: string, role: Role, ttlSeconds: number) => {
    if (!keys.canSign) throw new GatewayError(503, `issuing tokens needs auth.jwt.privateKeyFile for ${jwt.algorithm}`, 'not_configured')
    const token = app.jwt.sign({ sub, role }, { expiresIn: ttlSeconds })
    return { token, expiresAt: new Date((Math.floor(Date.now() / 1000) + ttlSeconds) * 1000) }
  })

  // Tokens already verified, until their `exp`: a client sends the same token with every request,
  // and the Map lookup costs far less than the signature check (or fast-jwt's hashed cache).
  const verified = new Map<string, { principal: Principal, expiresAt: number }>()
  const remember = (token: string, principal: Principal, expiresAt: number): void => {
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!)
    verified.set(token, { principal, expiresAt })
  }

  app.decorateRequest('principal', null as unknown as Principal)
  const authenticate = (request: FastifyRequest): void => {
    if (request.routeOptions.config.public === true) return
    const token = bearerToken(request)
    if (token.startsWith(KEY_PREFIX) && opts.keys !== undefined) {
      const found = opts.keys.verify(token)
      if ('problem' in found) throw new GatewayError(401, found.problem, 'invalid_api_key')
      const key = found.key
      request.principal = { sub: key.owner, role: key.role, keyId: key.id, ...(key.models !== undefined && { models: key.models }), ...(key.limits !== undefined && { keyLimits: key.limits }) }
      return
    }
    const known = verified.get(token)
    if (known !== undefined && known.expiresAt > Date.now()) {
      request.principal = known.principal
      return
    }
    let claims: { sub?: unknown, role?: unknown, exp?: unknown }
    try {
      claims = app.jwt.verify(token)
    } catch (err) {
      throw toAuthError(err)
    }
    const { sub, role } = claims
    if (typeof sub !== 'string' || sub === '' || (role !== 'user' && role !== 'admin')) {
      throw new GatewayError(401, 'token must carry a sub and a role of "user" or "admin"', 'invalid_api_key')
    }
    request.principal = { sub, role }
    remember(token, request.principal, Number(claims.exp) * 1000)
  }
  // Callback style: verification is synchronous, and an async hook costs a promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      authenticate(request)
    } catch (err) {
      done(err as Error)
      return
    }
    done()
  })
}, { name: 'chatgate-jwt' })
