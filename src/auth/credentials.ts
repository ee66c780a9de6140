import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../errors.js'
import { KEY_PREFIX } from './api-keys.js'

// Where a caller's credential comes from. Clients that can set a header send
// `Authorization: Bearer <JWT or key>` or `x-api-key`; clients that only take a base URL send HTTP
// Basic from `https://alice:<key>@host` (Go, Python requests/httpx/aiohttp, LangChain) or, where
// they drop URL credentials, put the key in the path: `/k/<key>/api/chat` (auth.pathKeys).

export interface Credential {
  token: string
  /** The user name of Basic credentials: it must be the key's owner. */
  basicUser?: string
}

const BEARER = /^Bearer +([^\s]+) *$/i
const BASIC = /^Basic +([A-Za-z0-9+/=_-]+) *$/i
const PATH_KEY = /^\/k\/([^/?#]+)(\/[^?#]*)?(.*)$/s
/** Where a path key waits between the URL rewrite and authentication (on the raw request). */
const pathKeySymbol = Symbol('chatgate.pathKey')
type WithPathKey = IncomingMessage & { [pathKeySymbol]?: string, originalUrl?: string }

/**
 * Fastify's rewriteUrl with auth.pathKeys on: `/k/<key>/api/chat` is routed as `/api/chat` and
 * `/k/<key>` or `/k/<key>/` (the Ollama CLI's heartbeat) as `/`, the key kept for
 * authentication. The URL with the key in it is never logged: request.url no longer has it, and
 * request.originalUrl has it replaced.
 */
export function takePathKey (req: IncomingMessage): string {
  const url = req.url ?? '/'
  const match = url.startsWith('/k/') ? PATH_KEY.exec(url) : null
  if (match === null) return url
  const raw = req as WithPathKey
  raw[pathKeySymbol] = decodedSegment(match[1]!)
  const rest = `${match[2] ?? '/'}${match[3]!}`
  raw.originalUrl = `/k/[redacted]${rest}`
  return rest
}

function decodedSegment (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment // a malformed escape: no key has one, so it is refused as unknown
  }
}

function basic (encoded: string): Credential {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) throw new GatewayError(401, 'malformed Basic credentials: expected base64 of "<user>:<API key>"', 'invalid_api_key')
  const user = decoded.slice(0, colon)
  const password = decoded.slice(colon + 1)
  if (password === '') {
    throw new GatewayError(401, 'Basic credentials need a ChatGate API key as the password, as in https://<user>:<API key>@<host>', 'missing_credentials')
  }
  if (!password.startsWith(KEY_PREFIX)) {
    throw new GatewayError(401, `the password of Basic credentials must be a ChatGate API key (${KEY_PREFIX}…)`, 'invalid_api_key')
  }
  return { token: password, basicUser: user }
}

/** The credential a request carries, undefined when it has none, or a 401 saying what is wrong. */
export function credentialOf (request: FastifyRequest): Credential | undefined {
  const pathKey = (request.raw as WithPathKey)[pathKeySymbol]
  if (pathKey !== undefined) return { token: pathKey }
  const header = request.headers.authorization
  const apiKey = request.headers['x-api-key']
  if (header === undefined || header === '') return typeof apiKey === 'string' && apiKey !== '' ? { token: apiKey } : undefined
  const bearer = BEARER.exec(header)
  if (bearer !== null) return { token: bearer[1]! }
  const basicMatch = BASIC.exec(header)
  if (basicMatch !== null) return basic(basicMatch[1]!)
  throw new GatewayError(401, 'malformed Authorization header: expected "Bearer <token or API key>" or "Basic <base64 of user:API key>"', 'invalid_api_key')
}

export const MISSING_CREDENTIALS = 'missing credentials: send Authorization: Bearer <token or API key>, or Basic with the API key as the password'
