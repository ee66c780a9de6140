import { readFileSync } from 'node:fs'
import type { FastifySchema, RouteOptions } from 'fastify'
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger'
import { KEY_PREFIX } from '../auth/api-keys.js'
import { HOST_CONSTRAINT } from '../proxy/hosts.js'
import { summaryOf } from './summaries.js'

// The parts of the OpenAPI document that the route files do not say: who ChatGate is, how to
// authenticate, which surface each route belongs to, and which routes are not API at all.

const TAGS = {
  openai: 'OpenAI-compatible',
  ollama: 'Ollama-compatible',
  xinference: 'Xinference management',
  biochatter: 'BioChatter',
  account: 'Account',
  auth: 'Auth',
  admin: 'Admin',
  operations: 'Operations',
} as const

const TAG_DESCRIPTIONS: Record<string, string> = {
  [TAGS.openai]: 'The OpenAI API (chat completions, embeddings, models), for the `openai` SDKs and anything that speaks it; served by whichever backend holds the model.',
  [TAGS.ollama]: "Ollama's API (/api/chat, /api/generate, /api/tags…), for the `ollama` clients and Open WebUI; model management (pull, create, copy, delete) is for admins.",
  [TAGS.xinference]: "Xinference's model management (launch, terminate, progress) for admins, as its RESTful client calls it; `?backend=` names the Xinference backend.",
  [TAGS.biochatter]: 'The BioChatter Next server API: point the frontend\'s BASE_URL at this prefix. Answers are HTTP 200 with a `code`.',
  [TAGS.account]: "The caller's own API keys, limits and usage.",
  [TAGS.auth]: 'Login (a JWT and a refresh token), refresh, logout, and the browser sign-in pages of the login gate.',
  [TAGS.admin]: 'Users, API keys, usage of everyone and certificates: admins only.',
  [TAGS.operations]: 'Probes for container platforms, and Prometheus metrics.',
}

// Names of the security schemes; every operation not public accepts any one of them.
const BEARER = 'bearer'
const API_KEY = 'apiKey'
const BASIC = 'basic'
const ANY_CREDENTIAL: Array<Record<string, string[]>> = [{ [BEARER]: [] }, { [API_KEY]: [] }, { [BASIC]: [] }]

const packageVersion = (): string =>
  // ../../package.json from src/docs/ and from dist/docs/ alike.
  (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** Everything of the document but its paths (those come from the routes). */
export function documentBase (): NonNullable<FastifyDynamicSwaggerOptions['openapi']> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'ChatGate',
      version: packageVersion(),
      description: [
        'A self-hosted chat gateway: OpenAI-, Ollama- and BioChatter-compatible APIs in front of a pool of model backends.',
        '',
        'Every route needs credentials unless it says otherwise (no lock). Send one of:',
        `- \`Authorization: Bearer <token>\`, with a JWT from \`POST /auth/login\` (or \`chatgate token\`) or an API key (\`${KEY_PREFIX}…\`, from \`POST /v1/me/keys\` or an admin);`,
        `- \`x-api-key: ${KEY_PREFIX}…\`;`,
        `- HTTP Basic with the key's owner as user name and the API key as password, as clients that take only a URL send it (\`https://alice:${KEY_PREFIX}…@host\`).`,
        '',
        'Where the gateway allows it (`auth.pathKeys`), the key may also lead the path: `/k/<key>/api/chat`.',
      ].join('\n'),
    },
    components: {
      securitySchemes: {
        [BEARER]: { type: 'http', scheme: 'bearer', bearerFormat: `JWT or API key ${KEY_PREFIX}…`, description: `A JWT from POST /auth/login, or an API key (${KEY_PREFIX}…)` },
        [API_KEY]: { type: 'apiKey', in: 'header', name: 'x-api-key', description: `An API key (${KEY_PREFIX}…)` },
        [BASIC]: { type: 'http', scheme: 'basic', description: `User name: the key's owner; password: the API key (${KEY_PREFIX}…)` },
      },
    },
    security: ANY_CREDENTIAL,
    tags: Object.values(TAGS).map((name) => ({ name, description: TAG_DESCRIPTIONS[name]! })),
  }
}

/** Where the routes of the API live, as the running config has them. */
export interface RouteLayout {
  /** The docs themselves: `docs.path`. */
  docsPath: string
  /** The BioChatter Next API's prefix, when it is served. */
  biochatterPrefix: string | undefined
}

const under = (url: string, prefix: string): boolean => url === prefix || url.startsWith(`${prefix}/`)
const methodsOf = (route: RouteOptions): string[] => typeof route.method === 'string' ? [route.method] : [...route.method]

/**
 * Routes that are not part of the API: the docs, the web apps ChatGate proxies (and the login
 * pages it serves again on their hosts), and the admin dashboard's page and assets.
 */
function hidden (route: RouteOptions, url: string, layout: RouteLayout): boolean {
  if (under(url, layout.docsPath)) return true
  if (route.config?.surface === 'proxy' || route.constraints?.[HOST_CONSTRAINT] !== undefined || url.includes('*')) return true
  return url === '/admin' || url === '/admin/' || url.startsWith('/admin/assets/')
}

/** The surface a route serves, by its URL (and method where one URL serves two). */
function tagOf (url: string, methods: string[], layout: RouteLayout): string | undefined {
  if (layout.biochatterPrefix !== undefined && under(url, layout.biochatterPrefix)) return TAGS.biochatter
  if (url.startsWith('/v1/me/')) return TAGS.account
  // Xinference's client shares /v1/models with OpenAI's: launching (POST), terminating (DELETE)
  // and progress are Xinference's; listing and describing are OpenAI's.
  if (url.startsWith('/v1/cluster/') ||
    (under(url, '/v1/models') && (url.endsWith('/progress') || methods.some((m) => m === 'POST' || m === 'DELETE')))) return TAGS.xinference
  if (url.startsWith('/v1/')) return TAGS.openai
  if (url === '/' || url.startsWith('/api/')) return TAGS.ollama
  if (url.startsWith('/auth/')) return TAGS.auth
  if (under(url, '/admin')) return TAGS.admin
  if (['/healthz', '/readyz', '/metrics'].includes(url)) return TAGS.operations
  return undefined
}

type Transform = (args: { schema: FastifySchema | undefined, url: string, route: RouteOptions }) => { schema: FastifySchema, url: string }

/**
 * The @fastify/swagger transform: tags, summary and security of each route, from its URL and
 * route config. A new schema object each time: the route's own is its validator's too.
 */
export function describeRoutes (layout: RouteLayout): Transform {
  // OpenAPI allows one template per path: GET /v1/models/:model and DELETE /v1/models/:uid are
  // one path, named as the first route had it (routes whose schema names no params).
  const templates = new Map<string, string>()
  const oneTemplate = (url: string, schema: FastifySchema): string => {
    if (!url.includes(':') || schema.params !== undefined) return url
    const shape = url.replace(/:[^/]+/g, ':')
    const first = templates.get(shape)
    if (first !== undefined) return first
    templates.set(shape, url)
    return url
  }
  return ({ schema, url, route }) => {
    const own = schema ?? {}
    if (hidden(route, url, layout)) return { schema: { ...own, hide: true }, url }
    const methods = methodsOf(route)
    const tag = tagOf(url, methods, layout)
    const summary = own.summary ?? summaryOf(methods, url, layout.biochatterPrefix)
    return {
      schema: {
        ...own,
        ...(tag !== undefined && own.tags === undefined && { tags: [tag] }),
        ...(summary !== undefined && { summary }),
        // Public routes take no credentials (some read them when given); the rest any one scheme.
        ...(route.config?.public === true && { security: [] }),
      },
      url: oneTemplate(url, own),
    }
  }
}
