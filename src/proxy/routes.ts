import proxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { requireBrowserLogin } from '../auth/login-gate.js'
import { ConfigError } from '../config/load.js'
import signInRoutes from '../routes/sign-in.js'
import { proxyProblems, type ProxyRoute } from '../config/proxy-schema.js'
import { passBodiesThrough } from './body.js'
import { installErrorPages, upstreamFailed } from './errors.js'
import { locationRewriter, upstreamHeaders, type HeaderPolicy } from './headers.js'
import { addHostRouting, hostConstraint } from './hosts.js'
import { refuseUpgrades, webSocketOptions } from './websocket.js'
import { serverTiming } from '../metrics/timing.js'

// When each proxied request went to its app: the overhead header leaves the app's time out.
const sentAt = new WeakMap<object, number>()

// Reverse-proxy routes to web apps (`proxy.routes`), in place of the Nginx that stood in front of
// BioChatter Light and Open WebUI. @fastify/http-proxy (reply-from on undici) does the proxying and
// the WebSocket pass-through; this file puts each route's options together.

/** Idempotent methods without a body: safe to send again when a kept-alive connection was dead. */
const RESENDABLE = new Set(['GET', 'HEAD'])

/** The path the route takes on the public side: '' for a whole host. */
const publicPrefixOf = (route: ProxyRoute): string => route.prefix === undefined || route.prefix === '/' ? '' : route.prefix

async function registerRoute (scope: FastifyInstance, route: ProxyRoute, policy: HeaderPolicy): Promise<void> {
  passBodiesThrough(scope, route.bodyLimit)
  // The login gate: a browser session, else the login page (plain requests and WebSocket upgrades alike).
  if (route.auth === 'login') scope.addHook('onRequest', requireBrowserLogin(scope, scope.gateway.sessions, scope.gateway.users))
  const publicPrefix = publicPrefixOf(route)
  const upstreamPath = new URL(route.upstream).pathname.replace(/\/+$/, '')
  // What the app sees for the public prefix: its own base path, plus the prefix when kept.
  const appPrefix = route.stripPrefix ? upstreamPath : upstreamPath + publicPrefix
  const rewriteLocation = locationRewriter(route.upstream, appPrefix, publicPrefix)
  const onError = upstreamFailed(route)

  await scope.register(proxy, {
    upstream: route.upstream,
    // Unset (and '' too) means the upstream URL's path, which is what stripping the prefix wants.
    ...(appPrefix !== '' && { rewritePrefix: appPrefix }),
    // Location headers are mapped by rewriteLocation, which also knows the app's absolute URLs.
    internalRewriteLocationHeader: false,
    constraints: hostConstraint(route.host),
    // Proxied requests are page loads, assets and polls, dozens per page: the per-user requests
    // per minute are for API calls and would lock users out of the app.
    // The app answers cross-origin calls to itself as it sees fit; ChatGate's CORS is for its API.
    config: { public: route.auth !== 'bearer', rateLimit: false, surface: 'proxy', cors: false },
    // Bodies are passed through by passBodiesThrough, with the route's limit.
    proxyPayloads: false,
    // One log line per request comes from src/logging.ts.
    disableRequestLogging: true,
    destroyAgent: true,
    undici: {
      headersTimeout: route.timeoutMs,
      bodyTimeout: route.timeoutMs,
      // reply-from turns certificate checks off unless told otherwise: an https upstream must be the real one.
      connect: { rejectUnauthorized: true },
    },
    replyOptions: {
      // (reply-from's types allow HTTP/2 servers; ChatGate's are HTTP/1.)
      rewriteRequestHeaders: (request, headers) => {
        sentAt.set(request, performance.now())
        return upstreamHeaders(request as FastifyRequest, headers as IncomingHttpHeaders, policy, false)
      },
      rewriteHeaders: (headers, request) => {
        if (typeof headers.location === 'string') headers.location = rewriteLocation(headers.location)
        // The app's own Server-Timing entries stay, after the gateway's.
        const sent = request === undefined ? undefined : sentAt.get(request)
        if (sent !== undefined) {
          const own = serverTiming((request as FastifyRequest).receivedAt, { label: 'app', ms: performance.now() - sent })
          headers['server-timing'] = headers['server-timing'] === undefined ? own : `${own}, ${String(headers['server-timing'])}`
        }
        return headers
      },
      onError: (reply, failure) => { onError(reply as FastifyReply, failure) },
      // The query as the client wrote it (@fastify/http-proxy would re-encode it: `?flag` → `?flag=`).
      queryString: (_search, url) => url.includes('?') ? url.slice(url.indexOf('?') + 1) : '',
      // No retry of a 503 (reply-from retries GETs up to ten times): the app's answer is passed on.
      // One retry when a kept-alive connection turned out closed before the app saw the request.
      retryDelay: ({ err, req, attempt }) =>
        attempt === 0 && (err as { code?: string } | undefined)?.code === 'UND_ERR_SOCKET' && RESENDABLE.has((req as unknown as { method: string }).method) ? 1 : null,
    },
    ...(route.websocket ? webSocketOptions(route, policy) : { preHandler: refuseUpgrades }),
  })
}

/** Reverse-proxy routes from `proxy.routes` (see src/config/proxy-schema.ts). */
export default async function proxyRoutes (app: FastifyInstance): Promise<void> {
  const { proxy: config, server } = app.gateway.config
  if (config.routes.length === 0) return
  // The config loader checks these too; a config built another way must not reach the router.
  const problems = proxyProblems(config)
  if (problems.length > 0) throw new ConfigError('(proxy.routes)', problems)

  addHostRouting(app, config.routes.flatMap((route) => route.host ?? []))
  // A host the proxy owns serves none of ChatGate's routes: its login gate needs the login page there.
  const loginHosts = new Set(config.routes.flatMap((route) => route.auth === 'login' && route.host !== undefined ? route.host.toLowerCase() : []))
  for (const host of loginHosts) await app.register(signInRoutes, { constraints: hostConstraint(host) })
  installErrorPages(app)
  for (const route of config.routes) {
    const policy: HeaderPolicy = { auth: route.auth, trustProxy: server.trustProxy !== false, users: app.gateway.users }
    const prefix = publicPrefixOf(route)
    await app.register(async (scope) => registerRoute(scope, route, policy), prefix === '' ? {} : { prefix })
  }
}
