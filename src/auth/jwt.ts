import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config, Role } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { KEY_PREFIX, type ApiKeys, type KeyLimits } from './api-keys.js'
import { MISSING_CREDENTIALS, credentialOf } from './credentials.js'
import { loadJwtKeys } from './keys.js'
import { trustedNetworks } from './trusted-networks.js'
import { REFRESH_PREFIX, type Sessions } from './sessions.js'
import { DISABLED, ROLE_USER, type Users } from './users.js'
import type { StoreGeneration } from '../store/generation.js'

/**
 * Who is calling: a user with a JWT, or a program with an API key (acting for its owner).
 * `sid`: the login session of the JWT (none for `chatgate token` tokens and API keys).
 */
export interface Principal { sub: string, role: Role, keyId?: string, models?: string[], keyLimits?: KeyLimits, sid?: string }

declare module 'fastify' {
  interface FastifyInstance {
    /** Signs an access token; with `sid`, it lives and dies with that login session. */
    issueToken: (sub: string, role: Role, ttlSeconds: number, sid?: string) => { token: string, expiresAt: Date }
    /** Authenticates a request of a public route that takes credentials when given; throws the 401. */
    authenticate: (request: FastifyRequest) => void
  }
  interface FastifyRequest { principal: Principal }
  interface FastifyContextConfig { public?: boolean }
}

const VERIFIED_CACHE_SIZE = 10_000

function toAuthError (err: unknown, token: string): GatewayError {
  const code = (err as { code?: string }).code
  if (code === 'FAST_JWT_EXPIRED') return new GatewayError(401, 'token expired', 'token_expired')
  if (token.startsWith(REFRESH_PREFIX)) return new GatewayError(401, 'a refresh token is not an access token: POST it to /auth/refresh', 'invalid_api_key')
  return new GatewayError(401, 'invalid token', 'invalid_api_key')
}

/** The store's parts; without them (as in `chatgate token`), only signatures are checked. */
export interface JwtAuthOptions {
  config: Config
  keys?: ApiKeys
  users?: Users
  sessions?: Sessions
  /** With it, what the store said of a token is reused until the store changes. */
  generation?: StoreGeneration
}

/**
 * Every route needs a valid JWT or API key unless its route config says `public: true`. The
 * algorithm is pinned (no `alg: none`, no HS/RS confusion), `exp` is required, `iss`/`aud` when
 * configured. The store says whether a key is valid, the user still enabled (and still an admin)
 * and the token's session still live; its answer for a token is reused until the store changes
 * (see StoreGeneration), so that revoking, disabling, demoting and logging out hold from the next
 * request on.
 */
export default fp(async function jwtAuth (app: FastifyInstance, opts: JwtAuthOptions) {
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

  app.decorate('issueToken', (sub: string, role: Role, ttlSeconds: number, sid?: string) => {
    if (!keys.canSign) throw new GatewayError(503, `issuing tokens needs auth.jwt.privateKeyFile for ${jwt.algorithm}`, 'not_configured')
    const token = app.jwt.sign(sid === undefined ? { sub, role } : { sub, role, sid }, { expiresIn: ttlSeconds })
    return { token, expiresAt: new Date((Math.floor(Date.now() / 1000) + ttlSeconds) * 1000) }
  })

  // Tokens already verified, until their `exp`: a client sends the same token with every request,
  // and the Map lookup costs far less than the signature check (or fast-jwt's hashed cache).
  const verified = new Map<string, { principal: Principal, expiresAt: number }>()
  const remember = (token: string, principal: Principal, expiresAt: number): void => {
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!)
    verified.set(token, { principal, expiresAt })
  }

  const { users, sessions } = opts
  /**
   * The principal as the store sees it now: refused when disabled or logged out, capped when
   * demoted. The account comes first: disabling also ends the sessions, and "account disabled"
   * says more than "session ended".
   */
  const standing = (principal: Principal): Principal => {
    const now = users?.standing(principal.sub)
    if (now === DISABLED) throw new GatewayError(401, 'account disabled', 'account_disabled')
    if (principal.sid !== undefined && sessions !== undefined && !sessions.isLive(principal.sid)) {
      throw new GatewayError(401, 'session ended', 'session_ended')
    }
    // An admin made a user since the token or key was issued: it acts as a user from now on.
    if (now === ROLE_USER && principal.role === 'admin') return { ...principal, role: 'user' }
    return principal
  }

  app.decorateRequest('principal', null as unknown as Principal)
  /** The token's principal as the store sees it now, and until when the token itself is valid. */
  const fromStore = (token: string): { principal: Principal, until: number } => {
    if (token.startsWith(KEY_PREFIX) && opts.keys !== undefined) {
      const found = opts.keys.verify(token)
      if (typeof found === 'string') throw new GatewayError(401, found, 'invalid_api_key')
      return { principal: standing(found.grant), until: found.expiresAt }
    }
    const known = verified.get(token)
    if (known !== undefined && known.expiresAt > Date.now()) return { principal: standing(known.principal), until: known.expiresAt }
    let claims: { sub?: unknown, role?: unknown, exp?: unknown, sid?: unknown }
    try {
      claims = app.jwt.verify(token)
    } catch (err) {
      throw toAuthError(err, token)
    }
    const { sub, role, sid } = claims
    if (typeof sub !== 'string' || sub === '' || (role !== 'user' && role !== 'admin')) {
      throw new GatewayError(401, 'token must carry a sub and a role of "user" or "admin"', 'invalid_api_key')
    }
    if (sid !== undefined && (typeof sid !== 'string' || sid === '')) throw new GatewayError(401, 'token sid must be a session id', 'invalid_api_key')
    const principal: Principal = sid === undefined ? { sub, role } : { sub, role, sid }
    // Remembered before the store check: the signature stays valid, the standing is asked each time.
    const until = Number(claims.exp) * 1000
    remember(token, principal, until)
    return { principal: standing(principal), until }
  }

  // What the store said of each token (key valid, user enabled, session live), until anything in
  // the store changes: the usual request costs no lookup at all.
  const { generation } = opts
  const checked = new Map<string, { principal: Principal, until: number }>()
  const principalOf = (token: string): Principal => {
    if (generation === undefined) return fromStore(token).principal
    if (generation.changed()) checked.clear()
    const hit = checked.get(token)
    if (hit !== undefined && hit.until > Date.now()) return hit.principal
    const found = fromStore(token)
    if (checked.size >= VERIFIED_CACHE_SIZE) checked.delete(checked.keys().next().value!)
    checked.set(token, found)
    return found.principal
  }
  const trusted = trustedNetworks(opts.config.auth.trustedNetworks)
  const authenticate = (request: FastifyRequest): void => {
    const credential = credentialOf(request)
    if (credential === undefined) {
      const service = trusted?.(request.ip)
      if (service === undefined) throw new GatewayError(401, MISSING_CREDENTIALS, 'missing_credentials')
      request.principal = standing(service)
      return
    }
    const principal = principalOf(credential.token)
    // https://alice:<key>@host: the key must be alice's, or the URL names someone it does not act for.
    if (credential.basicUser !== undefined && credential.basicUser !== principal.sub) {
      throw new GatewayError(401, 'the user name in the Basic credentials is not the owner of this API key', 'invalid_api_key')
    }
    request.principal = principal
  }
  app.decorate('authenticate', authenticate)
  // Callback style: verification is synchronous, and an async hook costs a promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.routeOptions.config.public === true) return done()
    try {
      authenticate(request)
    } catch (err) {
      done(err as Error)
      return
    }
    done()
  })
}, { name: 'chatgate-jwt' })
