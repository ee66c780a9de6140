import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import '@fastify/cookie'
import type { Sessions } from './sessions.js'
import type { Users } from './users.js'

// The oauth2-proxy role: routes with `auth: login` need a browser signed in on ChatGate's login
// page. The session cookie names a login session in the store; without a live one, a page visit
// goes to the login page (and comes back after), anything else gets a 401.

export const SESSION_COOKIE = 'chatgate_session'
export const SIGN_IN_PATH = '/auth/sign-in'

/**
 * Where to go after signing in: only a path on this same site (`/x`, never `//host`, `/\\host`
 * or a URL), else the site's root.
 */
export function sameOriginPath (target: unknown): string {
  if (typeof target !== 'string' || !target.startsWith('/') || target.startsWith('//') || target.includes('\\')) return '/'
  const base = 'http://gate.invalid'
  const url = new URL(target, base)
  return url.origin === base ? `${url.pathname}${url.search}${url.hash}` : '/'
}

export function signInLocation (returnTo: string): string {
  return `${SIGN_IN_PATH}?rd=${encodeURIComponent(returnTo)}`
}

/** Starts a browser session for a user who just signed in, and sends the browser on to `returnTo`. */
export function startBrowserSession (reply: FastifyReply, sessions: Sessions, user: string, ttlSeconds: number, returnTo: string): FastifyReply {
  const session = sessions.startBrowser(user, ttlSeconds)
  void reply.setCookie(SESSION_COOKIE, session.cookie, { path: '/', httpOnly: true, sameSite: 'lax', secure: 'auto', expires: session.expiresAt })
  return reply.code(303).header('location', returnTo).header('cache-control', 'no-store').send()
}

/** The session cookie of a request, if it sent one. */
export function sessionCookie (app: FastifyInstance, request: FastifyRequest): string | undefined {
  const header = request.headers.cookie
  return header === undefined ? undefined : app.parseCookie(header)[SESSION_COOKIE]
}

function refuse (request: FastifyRequest, reply: FastifyReply): void {
  const page = request.method === 'GET' || request.method === 'HEAD'
  if (page && (request.headers.accept ?? '').includes('text/html')) {
    void reply.code(302).header('location', signInLocation(sameOriginPath(request.url))).header('cache-control', 'no-store').send()
    return
  }
  void reply.code(401).type('text/plain; charset=utf-8').send(`sign in first: ${SIGN_IN_PATH}\n`)
}

/** The browser's signed-in user as the request's principal, or the way to the login page. */
export function requireBrowserLogin (app: FastifyInstance, sessions: Sessions, users: Users): onRequestHookHandler {
  return (request, reply, done) => {
    // Cookies are parsed here only: every other route (the chat path) never pays for it.
    const cookie = sessionCookie(app, request)
    const session = cookie === undefined ? undefined : sessions.browserSession(cookie)
    const account = session === undefined ? undefined : users.account(session.user)
    if (session === undefined || account === undefined || !account.enabled) {
      refuse(request, reply)
      return
    }
    request.principal = { sub: account.name, role: account.role, sid: session.id }
    done()
  }
}
