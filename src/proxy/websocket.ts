import type { FastifyHttpProxyOptions } from '@fastify/http-proxy'
import type { FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { WebSocket, type ClientOptions } from 'ws'
import type { ProxyRoute } from '../config/proxy-schema.js'
import { GatewayError } from '../errors.js'
import { upstreamHeaders, type HeaderPolicy } from './headers.js'

// WebSocket pass-through (Streamlit's /_stcore/stream, Open WebUI's /ws/socket.io). The upgrade
// request goes through the router and its hooks like any request, so the route's auth, the
// identity headers and the credential stripping apply to it as they do to plain requests.

// Close code 1011 (internal error): @fastify/http-proxy closes the client's socket with it when the
// connection to the app fails, and passes on the error's text as the reason, which names the app's
// internal address ("connect ECONNREFUSED 10.0.1.123:8080").
const FAILED = 1011
const FAILED_REASON = 'the connection to the web app failed'

/** The client's side of a proxied WebSocket: says that the app failed, not where it is. */
export class ClientSocket extends WebSocket {
  override close (code?: number, reason?: string | Buffer): void {
    super.close(code, code === FAILED ? FAILED_REASON : reason)
  }
}

type ClientOptionsWithHeaders = ClientOptions & {
  /** @fastify/http-proxy's hook for the upstream handshake's headers (its default passes only Cookie). */
  rewriteRequestHeaders: (headers: IncomingHttpHeaders, request: FastifyRequest) => IncomingHttpHeaders
}

/**
 * @fastify/http-proxy closes the app's side when the client's closes, but only once it is open: a
 * client that left while the app was still accepting would leave the app a connection (a Streamlit
 * session) nobody ends. Once open, it is closed if the client is gone.
 */
export const closeOrphans = {
  onConnect: (_context: unknown, source: WebSocket, target: WebSocket): void => {
    if (source.readyState !== source.OPEN) target.close(1001, 'the client left')
  },
}

/** @fastify/http-proxy's WebSocket options for a route with `websocket: true`. */
export function webSocketOptions (route: ProxyRoute, policy: HeaderPolicy): Pick<FastifyHttpProxyOptions, 'wsServerOptions' | 'wsClientOptions'> & { websocket: true, wsHooks: typeof closeOrphans } {
  const wsClientOptions: ClientOptionsWithHeaders = {
    // Everything the browser sent (cookies, origin, language…) as on plain requests.
    rewriteRequestHeaders: (_headers, request) => upstreamHeaders(request, request.headers, policy, true),
    handshakeTimeout: route.timeoutMs,
  }
  // (The cast: @types/ws seen from ESM and from http-proxy's CommonJS types are two declarations of one class.)
  return { websocket: true, wsServerOptions: { WebSocket: ClientSocket } as FastifyHttpProxyOptions['wsServerOptions'], wsClientOptions, wsHooks: closeOrphans }
}

/** preHandler of a route with `websocket: false`: an upgrade is refused, not passed on as a plain request. */
export function refuseUpgrades (request: FastifyRequest, _reply: unknown, done: (err?: Error) => void): void {
  if (request.headers.upgrade?.toLowerCase() === 'websocket') {
    done(new GatewayError(400, 'this web app does not accept WebSocket connections through ChatGate', 'websocket_disabled'))
    return
  }
  done()
}
