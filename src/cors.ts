import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'

// Cross-origin calls from browsers (server.cors.origins): a chat page on another site, a browser
// extension (Ollama's users set OLLAMA_ORIGINS for these), BioChatter Next's custom endpoint.
// Preflights are answered before authentication (browsers send no credentials with them); the
// answers carry Access-Control-Allow-Origin, errors too, so that a page can read a 401 or 429.

/** What the rate limits and quotas tell a caller: readable by the page, not just by the browser. */
const EXPOSED = ['retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset',
  'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens']

/**
 * An allowed origin as @fastify/cors takes it: `*` for any, an exact origin, or a pattern whose
 * `*` stands for one or more characters of a host or an extension id (`https://*.lab.org`,
 * `chrome-extension://*`), anchored so that `https://lab.org.evil.example` never matches.
 */
function originMatcher (origin: string): string | RegExp {
  if (origin === '*' || !origin.includes('*')) return origin
  const pattern = origin.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('[^/:]+')
  return new RegExp(`^${pattern}$`)
}

/** Registers CORS for the configured origins; with none, the gateway answers no cross-origin call. */
export async function registerCors (app: FastifyInstance, origins: string[]): Promise<void> {
  if (origins.length === 0) return
  await app.register(cors, {
    origin: origins.map(originMatcher),
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    // allowedHeaders unset: the headers a preflight asks for are allowed (the openai SDK sends
    // its own x-stainless-*); the origin is what is checked.
    exposedHeaders: EXPOSED,
    // Bearer tokens and API keys, not cookies: the login gate's session stays same-site.
    credentials: false,
    maxAge: 600,
  })
}
