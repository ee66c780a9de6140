import type { FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Principal } from '../auth/jwt.js'
import { SESSION_COOKIE } from '../auth/login-gate.js'
import type { Users } from '../auth/users.js'

// What the upstream web app is told, on plain requests and WebSocket upgrades alike: who calls
// (set by ChatGate only), where the request came from, and nothing of the caller's ChatGate
// credentials (bearer token or API key, browser-session cookie).

/** The identity headers an app behind ChatGate may trust (Open WebUI: WEBUI_AUTH_TRUSTED_*_HEADER). */
export const USER_HEADER = 'x-forwarded-user'
export const EMAIL_HEADER = 'x-forwarded-email'
export const GROUPS_HEADER = 'x-forwarded-groups'

// Headers an app behind an authenticating proxy may take as the user's identity (ours, oauth2-proxy's
// X-Auth-Request-*, the Nginx setup's X-User/X-Email, Remote-User). A client's own are dropped on
// every route, `auth: none` too: otherwise anyone could pose as anyone.
const IDENTITY = new Set([
  USER_HEADER, EMAIL_HEADER, GROUPS_HEADER, 'x-forwarded-preferred-username', 'x-forwarded-access-token',
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups', 'x-auth-request-preferred-username',
  'x-auth-request-access-token', 'x-user', 'x-email', 'remote-user', 'x-remote-user',
])

// Hop-by-hop headers (RFC 9110 §7.6.1) concern the client's connection to ChatGate, not ChatGate's
// to the app; Proxy-Authorization would be a credential meant for ChatGate.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization'])

// The caller's ChatGate credential (see bearerToken in src/auth/jwt.ts): on a bearer route it was
// meant for ChatGate, and the app must not be able to replay it against the API.
const CREDENTIALS = new Set(['authorization', 'x-api-key'])

// The WebSocket client writes its own handshake to the upstream (key, version, extensions, the
// subprotocol it was given, the upstream's Host).
const WS_HANDSHAKE = new Set(['host', 'content-length', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol'])

// Set below: the forwarding headers from what ChatGate saw, the cookies without ChatGate's own.
const REPLACED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'cookie'])
// Further claims about earlier hops: kept only from a proxy ChatGate trusts (server.trustProxy).
const EARLIER_HOPS = new Set(['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server'])

export interface HeaderPolicy {
  /** `bearer`: drop the caller's credential (on `login` routes the session cookie is what counts). */
  auth: 'login' | 'bearer' | 'none'
  /** server.trustProxy is set: X-Forwarded-For is appended to instead of replaced. */
  trustProxy: boolean
  users: Users
}

/**
 * The Cookie header without ChatGate's browser-session cookie (set for the whole site by the sign-in
 * page): the app's own cookies pass, ChatGate's login never does. Undefined when nothing is left.
 */
export function appCookies (header: string): string | undefined {
  const kept = header.split(';').filter((pair) => pair.split('=', 1)[0]!.trim() !== SESSION_COOKIE)
  return kept.length === 0 ? undefined : kept.map((pair) => pair.trim()).join('; ')
}

/**
 * A header value from a name the store did not vet (a JWT's `sub` from another issuer may hold
 * anything): printable ASCII stays, everything else (spaces, `%`, non-ASCII) is percent-encoded
 * as UTF-8, so that two names can never come out the same.
 */
export function headerValue (text: string): string {
  return text.replace(/[^\x21-\x24\x26-\x7e]/gu, (c) => [...Buffer.from(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''))
}

/**
 * The headers the upstream receives. `incoming` is the client's headers (for plain requests,
 * reply-from's copy, whose Host already names the upstream); `webSocket` leaves out what the
 * WebSocket client writes itself.
 */
export function upstreamHeaders (request: FastifyRequest, incoming: IncomingHttpHeaders, policy: HeaderPolicy, webSocket: boolean): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || IDENTITY.has(name) || REPLACED.has(name)) continue
    if (policy.auth === 'bearer' && CREDENTIALS.has(name)) continue
    if (webSocket && WS_HANDSHAKE.has(name)) continue
    if (!policy.trustProxy && EARLIER_HOPS.has(name)) continue
    out[name] = value
  }
  const cookies = incoming.cookie === undefined ? undefined : appCookies(incoming.cookie)
  if (cookies !== undefined) out.cookie = cookies

  // As Nginx's $proxy_add_x_forwarded_for: the trusted chain, then the peer ChatGate saw.
  const peer = request.socket.remoteAddress ?? 'unknown'
  const earlier = policy.trustProxy ? incoming['x-forwarded-for'] : undefined
  out['x-forwarded-for'] = earlier === undefined || earlier === '' ? peer : `${earlier}, ${peer}`
  // Fastify reads X-Forwarded-Proto/-Host itself when trustProxy says to, else the connection and Host.
  out['x-forwarded-proto'] = request.protocol
  out['x-forwarded-host'] = request.host

  const principal = request.principal as Principal | null
  if (principal !== null) {
    out[USER_HEADER] = headerValue(principal.sub)
    const email = policy.users.get(principal.sub)?.email
    if (email !== undefined) out[EMAIL_HEADER] = headerValue(email)
    out[GROUPS_HEADER] = principal.role
  }
  return out
}

/**
 * Redirects to the app's own URLs turned into paths under the route, as Nginx's `proxy_redirect
 * default` does: absolute ones the app built from the Host it saw (its internal address, as
 * Starlette's trailing-slash redirects do), which would send the browser there, and paths, which
 * miss the route's prefix when it is stripped. Other locations (other sites, relative paths) stay.
 * `appPrefix` is what the app sees for the route's public prefix.
 */
export function locationRewriter (upstream: string, appPrefix: string, publicPrefix: string): (location: string) => string {
  const origin = new URL(upstream).origin
  const base = origin + appPrefix
  return (location) => {
    // A path (not `//host/…`) is on the app's origin.
    const absolute = location.startsWith('/') && !location.startsWith('//') ? origin + location : location
    if (!absolute.startsWith(base)) return location
    const rest = absolute.slice(base.length)
    // `http://app:80801` is not under `http://app:8080`, nor `/lightning` under `/light`.
    if (rest !== '' && !/^[/?#]/.test(rest)) return location
    const path = publicPrefix + rest
    return path.startsWith('/') ? path : `/${path}`
  }
}
