import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { sameOriginPath, startBrowserSession } from '../auth/login-gate.js'
import { ProviderFailed, SignInRefused, type Attempt } from '../auth/external/provider.js'
import { perClientIp } from '../usage/rate-limits.js'

// Sign-in through an identity provider: /auth/sign-in/<name> sends the browser there with a fresh
// state, nonce and PKCE challenge, whose secrets wait in a short-lived cookie (so any replica can
// take the callback); /auth/callback/<name> checks them, asks the provider who signed in, and
// starts the same browser session as the password form.

const ATTEMPT_COOKIE = 'chatgate_signin'
const CALLBACK_PATH = '/auth/callback'
const ATTEMPT_TTL_S = 600

interface StoredAttempt extends Attempt { provider: string, returnTo: string }

const random = (): string => randomBytes(32).toString('base64url')

function storedAttempt (cookie: string | undefined, provider: string): StoredAttempt | undefined {
  if (cookie === undefined) return undefined
  try {
    const attempt = JSON.parse(Buffer.from(cookie, 'base64url').toString()) as Partial<StoredAttempt>
    const complete = [attempt.state, attempt.nonce, attempt.verifier, attempt.redirectUri, attempt.returnTo].every((v) => typeof v === 'string')
    return complete && attempt.provider === provider ? attempt as StoredAttempt : undefined
  } catch {
    return undefined
  }
}

export interface ExternalSignInOptions {
  constraints: Record<string, string>
  ttlSeconds: number
  /** The login page, with a problem to show (set reply's status first). */
  page: (reply: FastifyReply, problem: string, returnTo: string) => FastifyReply
}

export function externalSignInRoutes (app: FastifyInstance, opts: ExternalSignInOptions): void {
  const { constraints, page } = opts
  const { config, signIn, sessions } = app.gateway
  if (signIn.providers.size === 0) return

  app.get<{ Params: { provider: string }, Querystring: { rd?: string } }>('/auth/sign-in/:provider', { constraints, config: { public: true } }, async (request, reply) => {
    const returnTo = sameOriginPath(request.query.rd)
    const provider = signIn.providers.get(request.params.provider)
    if (provider === undefined) return page(reply.code(404), 'There is no such way to sign in here.', returnTo)
    const redirectUri = config.auth.signIn.providers.find((p) => p.name === provider.name)!.redirectUrl ??
      `${request.protocol}://${request.host}${CALLBACK_PATH}/${provider.name}`
    const attempt: StoredAttempt = { provider: provider.name, state: random(), nonce: random(), verifier: random(), redirectUri, returnTo }
    let location: string
    try {
      location = await provider.authorizationUrl(attempt)
    } catch (err) {
      if (!(err instanceof ProviderFailed)) throw err
      request.log.warn({ provider: provider.name, problem: err.message }, 'identity provider unavailable')
      return page(reply.code(502), `Sign-in with ${provider.title} is not available right now; please try again later.`, returnTo)
    }
    void reply.setCookie(ATTEMPT_COOKIE, Buffer.from(JSON.stringify(attempt)).toString('base64url'), {
      // SameSite=Lax: the provider's redirect back is a top-level navigation from its site.
      path: CALLBACK_PATH, httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: ATTEMPT_TTL_S,
    })
    return reply.code(302).header('location', location).header('cache-control', 'no-store').send()
  })

  app.get<{ Params: { provider: string } }>(`${CALLBACK_PATH}/:provider`, {
    constraints,
    config: { public: true, rateLimit: perClientIp(config.auth.loginPerMinute, 'sign-in') },
  }, async (request, reply) => {
    const provider = signIn.providers.get(request.params.provider)
    const attempt = provider === undefined ? undefined : storedAttempt(request.cookies[ATTEMPT_COOKIE], provider.name)
    void reply.clearCookie(ATTEMPT_COOKIE, { path: CALLBACK_PATH })
    if (provider === undefined || attempt === undefined) {
      return page(reply.code(400), 'This sign-in expired or was started in another browser; please sign in again.', '/')
    }
    const returnTo = sameOriginPath(attempt.returnTo)
    // The URL the provider sent the browser to, with its query (code, state, iss or error).
    const callback = new URL(attempt.redirectUri)
    const query = request.url.indexOf('?')
    callback.search = query === -1 ? '' : request.url.slice(query)
    try {
      const identity = await provider.identity(callback, attempt)
      const { user, created } = signIn.admit(provider, identity)
      request.log.info({ provider: provider.name, user, created }, created ? 'user created on first sign-in' : 'signed in through provider')
      return startBrowserSession(reply, sessions, user, opts.ttlSeconds, returnTo)
    } catch (err) {
      if (err instanceof SignInRefused) {
        request.log.info({ provider: provider.name, problem: err.message }, 'sign-in refused')
        return page(reply.code(403), `You cannot sign in: ${err.message}.`, returnTo)
      }
      if (!(err instanceof ProviderFailed)) throw err
      request.log.warn({ provider: provider.name, problem: err.message }, 'identity provider failed')
      return page(reply.code(502), `Sign-in with ${provider.title} failed; please try again later.`, returnTo)
    }
  })
}
