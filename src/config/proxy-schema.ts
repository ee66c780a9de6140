import { Type, type Static } from '@sinclair/typebox'

// Reverse-proxy routes to web apps (BioChatter Light, Open WebUI, BioChatter Next's frontend):
// what Nginx did in front of them. The schema checks each value on its own; `proxyProblems` checks
// what needs two fields or two routes at once (the config loader reports both by path).

/**
 * Path prefixes that belong to ChatGate itself. A route on them (without a host of its own) would
 * take over the API, the login or the probes; `/` would take over every path ChatGate does not
 * serve, and its Ollama probe.
 */
export const RESERVED_PREFIXES = ['/v1', '/api', '/auth', '/admin', '/healthz', '/readyz', '/metrics', '/biochatter'] as const

export const MiB = 1024 * 1024

// Segments of unreserved URL characters only: no `:` or `*`, which the router would read as a
// parameter or a wildcard, no `.`/`..` segments, no empty segment, no trailing slash.
const PREFIX_PATTERN = '^(/$|(/(?!\\.{1,2}(/|$))[A-Za-z0-9._~-]+)+)$'
// A DNS name or IPv4 address, matched against the Host header without its port.
const HOST_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'
// No user:password@ (a secret in the URL), no query or fragment (the path of the request follows).
const UPSTREAM_PATTERN = '^https?://[^\\s/?#@]+(/[^\\s?#]*)?$'

export const ProxyRouteSchema = Type.Object({
  // Pattern descriptions are also the loader's messages: "must be <description>".
  prefix: Type.Optional(Type.String({
    pattern: PREFIX_PATTERN,
    description: 'a path prefix like /light (letters, digits and . _ ~ - between slashes, no trailing slash): the requests under it go to this route',
  })),
  host: Type.Optional(Type.String({
    pattern: HOST_PATTERN,
    description: 'a host name like webui.example.org (no scheme, port or path): requests whose Host header names it go to this route, on every path (or under prefix)',
  })),
  upstream: Type.String({
    pattern: UPSTREAM_PATTERN,
    description: 'http(s) URL of the web app, like http://127.0.0.1:8501 (no user:password@, query or fragment); a path in it is put in front of every forwarded path',
  }),
  stripPrefix: Type.Boolean({ default: true, description: 'true: /light/x reaches the upstream as /x; false: as /light/x (for apps told their base path, like Streamlit\'s server.baseUrlPath)' }),
  websocket: Type.Boolean({ default: true, description: 'Pass WebSocket connections through (Streamlit\'s /_stcore/stream, Open WebUI\'s /ws/socket.io)' }),
  auth: Type.Union([Type.Literal('login'), Type.Literal('bearer'), Type.Literal('none')], {
    default: 'login',
    description: "login: a browser signed in on ChatGate's login page (others are sent there); bearer: a ChatGate JWT or API key is required; none: anyone may call the app (it has its own login). With login and bearer the app learns who calls from X-Forwarded-User/-Email/-Groups",
  }),
  timeoutMs: Type.Integer({ minimum: 1, default: 600_000, description: 'Longest wait for the upstream\'s response headers, and longest pause inside its response body, before 504' }),
  bodyLimit: Type.Integer({ minimum: 0, default: 50 * MiB, description: 'Largest request body in bytes (uploads), passed to the upstream as it arrives' }),
}, { additionalProperties: false, description: 'One web app: matched by prefix, by host, or by both (at least one of the two)' })

export const ProxySchema = Type.Object({
  routes: Type.Array(ProxyRouteSchema, { default: [], description: 'Web apps ChatGate serves in front of, first match by host, then by the longest prefix' }),
}, { additionalProperties: false, default: {}, description: 'Reverse-proxy routes to web apps ChatGate fronts' })

export type ProxyConfig = Static<typeof ProxySchema>
export type ProxyRoute = Static<typeof ProxyRouteSchema>

/** `/api/x` → `/api`; `/` → `/`. */
const firstSegment = (prefix: string): string => prefix === '/' ? '/' : `/${prefix.split('/')[1]!.toLowerCase()}`

/** The reserved prefix a path would take over, if any. */
export function reservedPrefixOf (prefix: string): string | undefined {
  const first = firstSegment(prefix)
  return first === '/' || (RESERVED_PREFIXES as readonly string[]).includes(first) ? first : undefined
}

/** Rules of proxy.routes that a schema cannot say: every problem, by path. */
export function proxyProblems (proxy: ProxyConfig): string[] {
  const problems: string[] = []
  const seen = new Map<string, number>()
  proxy.routes.forEach((route, i) => {
    const where = `proxy.routes[${i}]`
    if (route.prefix === undefined && route.host === undefined) {
      problems.push(`${where}: needs a prefix (like /light), a host (like webui.example.org), or both`)
      return
    }
    if (route.host === undefined && route.prefix !== undefined) {
      const reserved = reservedPrefixOf(route.prefix)
      if (reserved !== undefined) {
        problems.push(`${where}.prefix: "${route.prefix}" would hide ChatGate's own ${reserved === '/' ? 'routes' : `${reserved} routes`}; choose another prefix, or give the route a host of its own`)
      }
    }
    try {
      new URL(route.upstream) // eslint-disable-line no-new
    } catch {
      problems.push(`${where}.upstream: "${route.upstream}" is not a valid URL`)
    }
    // A host route without a prefix and one with prefix "/" are the same route.
    const key = `${route.host?.toLowerCase() ?? '*'} ${route.prefix === '/' ? '' : route.prefix ?? ''}`
    const first = seen.get(key)
    if (first !== undefined) problems.push(`${where}: matches the same ${route.host === undefined ? 'prefix' : 'host and prefix'} as proxy.routes[${first}]`)
    else seen.set(key, i)
  })
  return problems
}

const under = (path: string, prefix: string): boolean => path === prefix || path.startsWith(`${prefix}/`)

/**
 * A proxied app on the docs' path (or around it) would lose those paths to the docs, or refuse
 * to start with a duplicate route: said by config key instead. Apps on a host of their own keep
 * every path of that host.
 */
export function docsProblems (config: { docs: { enabled: boolean, path: string }, proxy: ProxyConfig }): string[] {
  if (!config.docs.enabled) return []
  const { path } = config.docs
  return config.proxy.routes.flatMap((route, i) => {
    const prefix = route.prefix
    if (route.host !== undefined || prefix === undefined || prefix === '/') return []
    if (!under(path, prefix) && !under(prefix, path)) return []
    return [`docs.path: "${path}" overlaps proxy.routes[${i}].prefix "${prefix}"; move the docs (docs.path) or set docs.enabled: false`]
  })
}
