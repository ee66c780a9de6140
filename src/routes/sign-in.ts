import formBody from '@fastify/formbody'
import csrf from '@fastify/csrf-protection'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { SESSION_COOKIE, SIGN_IN_PATH, sameOriginPath, startBrowserSession } from '../auth/login-gate.js'
import { DUMMY_HASH, verifyPassword } from '../auth/passwords.js'
import { parseTtl } from '../auth/ttl.js'
import { perClientIp } from '../usage/rate-limits.js'
import { GatewayError } from '../errors.js'
import { externalSignInRoutes } from './sign-in-external.js'
import { SIGN_IN_CSP, signInPage } from './sign-in-page.js'

// ChatGate's own login page for the login gate (proxy routes with `auth: login`): a form with a
// CSRF token, a session cookie (httpOnly, SameSite=Lax, Secure over HTTPS) on success, and back
// to the page the browser asked for. Sign-out ends the session in the store. Identity providers
// (OIDC, GitHub) sign in through the same page: sign-in-external.ts.

interface SignInForm { username?: string, password?: string, rd?: string, _csrf?: string }

/**
 * `constraints`: for a host that a proxy route owns (src/proxy/hosts.ts), the same pages again,
 * constrained to that host, so that its login gate has a login page to send browsers to.
 */
export default async function signInRoutes (app: FastifyInstance, opts: { constraints?: Record<string, string> }): Promise<void> {
  const constraints = opts.constraints ?? {}
  const { config, users, sessions } = app.gateway
  const ttl = parseTtl(config.auth.browserSessionTtl)!
  // The app parses no cookies on its own (see app.ts); these pages need them for the CSRF secret.
  app.addHook('onRequest', (request, _reply, done) => {
    request.cookies = request.headers.cookie === undefined ? {} : app.parseCookie(request.headers.cookie)
    done()
  })
  await app.register(formBody)
  await app.register(csrf, {
    cookieKey: 'chatgate_csrf',
    cookieOpts: { path: SIGN_IN_PATH, httpOnly: true, sameSite: 'strict', secure: 'auto' },
    getToken: (request) => (request.body as SignInForm | undefined)?._csrf,
  })
  // Errors on these pages are pages too.
  app.setErrorHandler((err: GatewayError | Error, request, reply) => {
    const status = (err as { statusCode?: number }).statusCode ?? 500
    const problem = status === 403 ? 'The form expired or came from another site: please sign in again.' : status === 429 ? err.message : 'Something went wrong; please try again.'
    if (status >= 500) request.log.error({ err }, 'sign-in page failed')
    return page(reply.code(status === 500 ? 500 : status), problem, sameOriginPath((request.body as SignInForm | undefined)?.rd))
  })

  const providers = [...app.gateway.signIn.providers.values()].map((p) => ({ name: p.name, title: p.title }))
  const page = (reply: FastifyReply, problem: string | undefined, returnTo: string, signedOut = false): FastifyReply =>
    reply.header('content-security-policy', SIGN_IN_CSP).header('cache-control', 'no-store').type('text/html; charset=utf-8')
      .send(signInPage({ csrf: reply.generateCsrf(), returnTo, providers, ...(problem !== undefined && { problem }), signedOut }))
  externalSignInRoutes(app, { constraints, ttlSeconds: ttl, page })

  app.get<{ Querystring: { rd?: string, signed_out?: string } }>(SIGN_IN_PATH, { constraints, config: { public: true } }, async (request, reply) =>
    page(reply, undefined, sameOriginPath(request.query.rd), request.query.signed_out !== undefined))

  app.post<{ Body: SignInForm }>(SIGN_IN_PATH, {
    constraints,
    config: {
      public: true,
      rateLimit: perClientIp(config.auth.loginPerMinute, 'sign-in'),
    },
    // After the body is parsed: the token is a form field.
    preHandler: app.csrfProtection,
  }, async (request, reply) => {
    const { username, password } = request.body ?? {}
    const returnTo = sameOriginPath(request.body?.rd)
    const account = typeof username === 'string' && username !== '' ? users.account(username) : undefined
    const ok = await verifyPassword(typeof password === 'string' ? password : '', account?.passwordHash ?? DUMMY_HASH)
    if (account === undefined || !ok || !account.enabled) return page(reply.code(401), 'Wrong user name or password.', returnTo)
    return startBrowserSession(reply, sessions, account.name, ttl, returnTo)
  })

  // A plain link works for sign-out (apps can point their own logout at it).
  const signOut = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const cookie = request.cookies[SESSION_COOKIE]
    const session = cookie === undefined ? undefined : sessions.browserSession(cookie)
    if (session !== undefined) sessions.end(session.id)
    void reply.clearCookie(SESSION_COOKIE, { path: '/' })
    return reply.code(303).header('location', `${SIGN_IN_PATH}?signed_out=1`).header('cache-control', 'no-store').send()
  }
  app.get('/auth/sign-out', { constraints, config: { public: true } }, signOut)
  app.post('/auth/sign-out', { constraints, config: { public: true } }, signOut)
}
