import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { verifyPassword } from '../auth/passwords.js'
import { parseTtl } from '../auth/ttl.js'
import { GatewayError } from '../errors.js'

const LoginBody = Type.Object({ username: Type.String({ minLength: 1 }), password: Type.String({ minLength: 1 }) })

// Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='

/** POST /auth/login {username, password} → {token, expires_at}; rate-limited per client IP. */
export default async function authRoutes (app: FastifyInstance): Promise<void> {
  const { config } = app.gateway
  const ttl = parseTtl(config.auth.jwt.tokenTtl)!
  app.post<{ Body: Static<typeof LoginBody> }>('/auth/login', {
    schema: { body: LoginBody },
    config: {
      public: true,
      // Counted before the body is even parsed: every attempt costs, well-formed or not.
      rateLimit: { hook: 'onRequest', max: config.auth.loginPerMinute, timeWindow: 60_000, keyGenerator: (request) => `login:${request.ip}` },
    },
  }, async (request) => {
    const { username, password } = request.body
    const user = config.auth.users.find((u) => u.username === username)
    const ok = await verifyPassword(password, user?.passwordHash ?? DUMMY_HASH)
    if (user === undefined || !ok) throw new GatewayError(401, 'wrong username or password', 'invalid_credentials')
    const { token, expiresAt } = app.issueToken(user.username, user.role ?? 'user', ttl)
    return { token, token_type: 'Bearer', expires_at: expiresAt.toISOString() }
  })
}
