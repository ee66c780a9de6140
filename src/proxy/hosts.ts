import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'

// Host routes: a request whose Host header names a proxy host belongs to that host's web app on
// every path, ChatGate's own routes included (Open WebUI's /api/version is not Ollama's). The
// router's own `host` constraint cannot do that: a route without a constraint still matches any
// host, and the router tries a static path like /api/version before the app's wildcard. A custom
// constraint marked mustMatchWhenDerived can: once a request derives a value for it, only routes
// carrying that value match, so ChatGate's routes drop out for that host and stay as they are for
// every other host.

export const HOST_CONSTRAINT = 'chatgateProxyHost'

/** The Host header's name, lower case, without port or trailing dot; undefined when absent. */
export function hostName (header: string | undefined): string | undefined {
  if (header === undefined || header === '') return undefined
  // `name:8443`, `[::1]:8443`: the port is the listener's business, not the app's.
  return header.replace(/:\d*$/, '').replace(/\.$/, '').toLowerCase()
}

/** Lets routes be constrained to the proxy hosts; a no-op without host routes. */
export function addHostRouting (app: FastifyInstance, hosts: string[]): void {
  if (hosts.length === 0) return
  const known = new Set(hosts.map((h) => h.toLowerCase()))
  app.addConstraintStrategy({
    name: HOST_CONSTRAINT,
    mustMatchWhenDerived: true,
    storage () {
      const handlers = new Map<unknown, any>()
      return {
        get: (value) => handlers.get(value) ?? null,
        set: (value, handler) => { handlers.set(value, handler) },
      }
    },
    // Undefined for every host that is not a proxy host: those requests route as before. HTTP/2
    // (ChatGate's HTTPS) names the host in :authority.
    deriveConstraint: (req: IncomingMessage) => {
      const name = hostName(req.headers.host ?? req.headers[':authority'] as string | undefined)
      return name !== undefined && known.has(name) ? name : undefined
    },
  })
}

/** The route constraint for a route with `host`, none otherwise. */
export const hostConstraint = (host: string | undefined): Record<string, string> =>
  host === undefined ? {} : { [HOST_CONSTRAINT]: host.toLowerCase() }
