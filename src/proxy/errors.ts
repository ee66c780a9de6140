import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ProxyRoute } from '../config/proxy-schema.js'
import { GatewayError, openaiErrorBody } from '../errors.js'
import { tooLarge, wasCutOff } from './body.js'
import { escapeHtml } from '../html.js'

// Browsers hit proxied routes: what goes wrong there (no credential, app down, app too slow, upload
// too large) comes as a small HTML page, or as the gateway's JSON error for callers that ask for
// JSON (the app's own fetch() calls). Pages name the route, never the upstream's address.

/** Where the route is, as its users know it: `/light`, `webui.example.org`, `apps.example.org/next`. */
export const routeLabel = (route: ProxyRoute): string => `${route.host ?? ''}${route.prefix === '/' && route.host !== undefined ? '' : route.prefix ?? ''}`

/**
 * The q-value Accept gives `type`, from its most specific matching range (RFC 9110 §12.5.1), and
 * that range's specificity: 3 for the type itself, 2 for `major/*`, 1 for `*\/*`, 0 for none.
 */
function acceptance (accept: string, type: string): [q: number, specificity: number] {
  const wildcard = `${type.split('/')[0]!}/*`
  let best: [number, number] = [0, 0]
  for (const part of accept.toLowerCase().split(',')) {
    const [range, ...params] = part.split(';').map((s) => s.trim())
    const specificity = range === type ? 3 : range === wildcard ? 2 : range === '*/*' ? 1 : 0
    if (specificity <= best[1]) continue
    const q = Number(params.find((p) => p.startsWith('q='))?.slice(2) ?? 1)
    best = [Number.isNaN(q) ? 0 : q, specificity]
  }
  return best
}

/**
 * JSON when Accept ranks it above HTML, or names it where HTML only falls under a wildcard
 * (`application/json, text/plain, *\/*`, as fetch libraries send); a page otherwise (browsers,
 * curl's `*\/*`, no Accept at all).
 */
export function prefersJson (accept: string | undefined): boolean {
  if (accept === undefined) return false
  const [jsonQ, jsonSpecificity] = acceptance(accept, 'application/json')
  const [htmlQ, htmlSpecificity] = acceptance(accept, 'text/html')
  return jsonQ > htmlQ || (jsonQ === htmlQ && jsonQ > 0 && jsonSpecificity > htmlSpecificity)
}

/** A page that says what failed in one sentence. */
export function errorPage (status: number, message: string): string {
  const title = `${status} ${STATUS_CODES[status] ?? 'Error'}`
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">' +
    `<title>${title}</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}` +
    'h1{font-size:1.4rem}small{color:#777}</style></head>\n' +
    `<body><h1>${title}</h1><p>${escapeHtml(message.charAt(0).toUpperCase() + message.slice(1))}.</p><p><small>ChatGate</small></p></body></html>\n`
}

export function sendError (request: FastifyRequest, reply: FastifyReply, error: GatewayError): FastifyReply {
  reply.code(error.statusCode).header('cache-control', 'no-store')
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds))
  // Whatever is left of a refused upload is not read: the connection ends with the answer. (HTTP/2
  // has no Connection header; its stream ends alone.)
  if (error.statusCode === 413 && request.raw.httpVersionMajor === 1) reply.header('connection', 'close')
  if (error.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="ChatGate"')
  if (prefersJson(request.headers.accept)) {
    return reply.type('application/json; charset=utf-8').send(openaiErrorBody(error.statusCode, error.message, error.code))
  }
  return reply.type('text/html; charset=utf-8').send(errorPage(error.statusCode, error.message))
}

/**
 * In `app`'s context: the gateway's own refusals (401, 429, 413) as pages or JSON. Other errors
 * (Fastify's, the proxy plugin's own 400s) go on to the gateway's handler, which words them.
 */
export function installErrorPages (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (!(err instanceof GatewayError)) throw err
    return sendError(request, reply, err)
  })
}

/** reply-from's onError for a route: the upstream failed before its response began. */
export function upstreamFailed (route: ProxyRoute): (reply: FastifyReply, failure: { error: Error }) => void {
  const label = routeLabel(route)
  return (reply, { error }) => {
    const request = reply.request
    if (wasCutOff(request)) {
      sendError(request, reply, tooLarge(route.bodyLimit))
      return
    }
    // reply-from gives its timeouts (response headers, connect) status 504; the rest (refused,
    // reset, unknown host) means the app is not there.
    const timedOut = (error as FastifyError).statusCode === 504
    sendError(request, reply, timedOut
      ? new GatewayError(504, `the web app at ${label} did not answer in time`, 'upstream_timeout')
      : new GatewayError(502, `ChatGate could not reach the web app at ${label}`, 'upstream_unreachable'))
  }
}
