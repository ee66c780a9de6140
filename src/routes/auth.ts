import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import { perClientIp } from '../usage/rate-limits.js'
import type { Account } from '../auth/users.js'
import type { Refresh } from '../auth/sessions.js'
import { DUMMY_HASH, verifyPassword } from '../auth/passwords.js'
import { parseTtl } from '../auth/ttl.js'
import { GatewayError } from '../errors.js'

// Login, refresh and logout. A login starts a session: a short-lived access JWT that names the
// session (`sid`) and a long-lived, single-use refresh token. Logging out ends the session, and
// with it every access token and refresh token it issued, from the next request on.

const LoginBody = Type.Object({ username: Type.String({ minLength: 1 }), password: Type.String({ minLength: 1 }) })
const RefreshBody = Type.Object({ refresh_token: Type.String({ minLength: 1 }) })


/** The optional `{refresh_token}` of a logout; the body itself is optional, so no route schema. */
function logoutRefreshToken (request: FastifyRequest): string | undefined {
  const body = request.body as { refresh_token?: unknown } | null | undefined
  if (body === undefined || body === null) return undefined
  if (typeof body !== 'object' || Array.isArray(body)) throw new GatewayError(400, 'invalid request: body must be an object', 'invalid_request')
  const token = body.refresh_token
  if (token !== undefined && typeof token !== 'string') throw new GatewayError(400, 'invalid request: body.refresh_token must be string', 'invalid_request')
  return token
}

/**
 * POST /auth/login {username, password} and POST /auth/refresh {refresh_token} → {token,
 * token_type, expires_at, refresh_token, refresh_expires_at}, both rate-limited per client IP;
 * POST /auth/logout [{refresh_token}] → {sessions_ended}.
 */
export default async function authRoutes (app: FastifyInstance): Promise<void> {
  const { config, users, sessions } = app.gateway
  const accessTtl = parseTtl(config.auth.jwt.tokenTtl)!
  const refreshTtl = parseTtl(config.auth.refreshTokenTtl)!
  const perIp = (bucket: string): RateLimitOptions => perClientIp(config.auth.loginPerMinute, bucket)

  const tokens = (account: Account, refresh: Refresh): Record<string, string> => {
    const { token, expiresAt } = app.issueToken(account.name, account.role, accessTtl, refresh.sessionId)
    return {
      token,
      token_type: 'Bearer',
      expires_at: expiresAt.toISOString(),
      refresh_token: refresh.refreshToken,
      refresh_expires_at: refresh.expiresAt.toISOString(),
    }
  }

  app.post<{ Body: Static<typeof LoginBody> }>('/auth/login', {
    schema: { body: LoginBody },
    config: { public: true, rateLimit: perIp('login') },
  }, async (request) => {
    const { username, password } = request.body
    const account = users.account(username)
    const ok = await verifyPassword(password, account?.passwordHash ?? DUMMY_HASH)
    if (account === undefined || !ok) throw new GatewayError(401, 'wrong username or password', 'invalid_credentials')
    // Said only to whoever knows the password: it tells them why, and a guesser learns nothing.
    if (!account.enabled) throw new GatewayError(401, 'account disabled', 'account_disabled')
    sessions.prune(Date.now() - accessTtl * 1000)
    const refresh = sessions.start(account.name, refreshTtl)
    try {
      return tokens(account, refresh)
    } catch (err) {
      sessions.end(refresh.sessionId) // e.g. no signing key: no session without its token
      throw err
    }
  })

  app.post<{ Body: Static<typeof RefreshBody> }>('/auth/refresh', {
    schema: { body: RefreshBody },
    config: { public: true, rateLimit: perIp('refresh') },
  }, async (request) => {
    const rotated = sessions.rotate(request.body.refresh_token, refreshTtl)
    if ('problem' in rotated) throw new GatewayError(401, rotated.problem, rotated.code)
    // The role comes from the store again: a promotion or demotion shows in the new token.
    const account = users.account(rotated.user)
    if (account === undefined || !account.enabled) {
      sessions.end(rotated.sessionId)
      throw account === undefined
        ? new GatewayError(401, `unknown user '${rotated.user}'`, 'invalid_credentials')
        : new GatewayError(401, 'account disabled', 'account_disabled')
    }
    return tokens(account, rotated)
  })

  app.post('/auth/logout', async (request) => {
    const refreshToken = logoutRefreshToken(request)
    let ended = 0
    if (request.principal.sid !== undefined && sessions.end(request.principal.sid)) ended++
    if (refreshToken !== undefined && sessions.endByRefreshToken(refreshToken)) ended++
    return { sessions_ended: ended }
  })
}
