import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify'
import { randomBytes } from 'node:crypto'
import pino, { type DestinationStream } from 'pino'
import type { Config } from './config/schema.js'
import type { ChatRecord } from './relay/usage.js'
import { answered } from './relay/client-stream.js'

declare module 'fastify' {
  interface FastifyRequest { chat: ChatRecord | undefined }
}

// Log lines are encoded into a buffer that goes to stdout in one write when full or every quarter
// second, and on close: a write per request cost a sixth of the CPU at high rates, and joining
// pino's strings (or letting sonic-boom concatenate them) cost more than encoding them in place.
const LOG_BUFFER_BYTES = 16 * 1024
const LOG_FLUSH_MS = 250

export interface LogDestination {
  stream: DestinationStream
  /** Writes out what is buffered and stops the periodic flush. */
  close: () => void
}

/** Where the gateway's log lines go: `fd` (stdout unless a test says otherwise), batched. */
export function logDestination (fd = 1): LogDestination {
  // sonic-boom does the writing itself (partial writes, EAGAIN on a full pipe); in buffer mode
  // it takes Buffers, though its type says strings.
  const sonic = pino.destination({ dest: fd, sync: true, contentMode: 'buffer' })
  const out = sonic as unknown as { write: (data: Buffer) => boolean }
  let buffer = Buffer.allocUnsafe(LOG_BUFFER_BYTES)
  let used = 0
  const flush = (): void => {
    if (used === 0) return
    out.write(buffer.subarray(0, used))
    // sonic-boom may keep the slice queued (full pipe): never reuse it.
    buffer = Buffer.allocUnsafe(LOG_BUFFER_BYTES)
    used = 0
  }
  const timer = setInterval(flush, LOG_FLUSH_MS)
  timer.unref()
  return {
    stream: {
      write (line: string) {
        // A UTF-16 unit is at most three UTF-8 bytes.
        if (used + line.length * 3 > LOG_BUFFER_BYTES) flush()
        if (line.length * 3 > LOG_BUFFER_BYTES) out.write(Buffer.from(line))
        else used += buffer.write(line, used)
      },
    },
    close: () => {
      clearInterval(timer)
      flush()
      sonic.flushSync()
    },
  }
}

/**
 * pino options. Nothing the gateway logs carries headers, bodies or message contents; the redact
 * paths guard the places where a secret could still turn up (a request logged by a plugin).
 * Fixed paths only: wildcard paths cost more per line than the rest of the line together.
 */
export function loggerOptions (config: Config): Exclude<FastifyServerOptions['logger'], boolean | undefined> {
  return {
    level: config.log.level,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'headers.authorization', 'headers.cookie', 'body', 'password'],
      censor: '[redacted]',
    },
  }
}

declare module 'fastify' {
  /** A refusal sent with another HTTP status (the BioChatter Next API answers 200): the real one, for the log. */
  interface FastifyRequest {
    refusedWith?: number
    /** The limit that refused the request (with 429), for the metrics. */
    refusedBy?: 'rate' | 'quota' | 'concurrency'
    /** When the request arrived (performance.now()): the overhead header counts from here. */
    receivedAt: number
    /** The client stopped reading its answer for server.sendTimeoutMs and was cut off. */
    sendTimedOut: boolean
    /** request.ip as it was on arrival: an HTTP/2 stream that has closed no longer knows it. */
    clientAddress: string | undefined
  }
}

// Query parameters that carry secrets: an identity provider's code and state on the sign-in
// callback, tokens, keys and passwords some clients put in URLs.
const SECRET_QUERY = /([?&](?:code|state|access_token|id_token|token|key|api_key|apikey|password|pass|pwd|secret)=)[^&#]*/gi

/** A URL as logged (or shown in the dashboard's config): the values of secret query parameters replaced. */
export const withoutSecrets = (url: string): string => url.replace(SECRET_QUERY, '$1[redacted]')

/**
 * Request ids: this process's random prefix and a counter, so that an id is unique across
 * restarts and replicas (Fastify's own start again at req-1). Each answer carries its id as
 * `x-request-id`, which the openai SDK shows as `_request_id` and in its errors: a user can quote
 * it and the admin finds the log line (reqId).
 */
export function requestIds (): () => string {
  const prefix = `${randomBytes(4).toString('hex')}-`
  let next = 0
  return () => prefix + (next++).toString(36)
}

/** The log line's message for a request whose answer never ended, by the status logged for it. */
const UNFINISHED: Record<number, string> = {
  101: 'websocket closed',
  408: 'request timed out: the client sent it too slowly',
  499: 'request aborted by client',
}

/** Called once per request when the connection is done with it, after its log line. */
export type RequestDone = (request: FastifyRequest, status: number, durationMs: number) => void

/** One line per request, written when the connection is done with it (finished or aborted). */
export function requestLogLine (app: FastifyInstance, onDone?: RequestDone): void {
  app.decorateRequest('chat', undefined)
  app.decorateRequest('refusedWith', undefined)
  app.decorateRequest('refusedBy', undefined)
  app.decorateRequest('receivedAt', 0)
  app.decorateRequest('sendTimedOut', false)
  app.decorateRequest('clientAddress', undefined)
  // Connections Node cut off with a 408 (server.requestTimeoutMs): their request did not end by the client's choice.
  const timedOut = new WeakSet<object>()
  app.server.on('clientError', (err: NodeJS.ErrnoException, socket: object) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') timedOut.add(socket)
  })
  // Callback-style hooks: an async hook costs Fastify a promise and extra ticks per request.
  app.addHook('onRequest', (request, reply, done) => {
    request.receivedAt = performance.now()
    request.clientAddress = request.ip
    void reply.header('x-request-id', request.id)
    reply.raw.once('close', () => {
      const res = reply.raw
      const finished = answered(res)
      const chat = request.chat
      // Built flat, without spreads: this runs for every request.
      // A proxied WebSocket (reply-from hijacked the reply, no HTTP response) ends with its socket.
      const upgraded = !finished && reply.sent && !res.headersSent && request.headers.upgrade !== undefined
      const status = finished ? request.refusedWith ?? res.statusCode : upgraded ? 101 : timedOut.has(request.raw.socket) ? 408 : 499
      const line: Record<string, unknown> = {
        method: request.method,
        url: request.url.includes('=') ? withoutSecrets(request.url) : request.url,
        status,
        user: request.principal?.sub,
        // As Nginx's $remote_addr: behind a load balancer (server.trustProxy) the forwarded one.
        ip: request.clientAddress,
      }
      if (request.principal?.keyId !== undefined) line.apiKey = request.principal.keyId
      if (chat !== undefined) {
        line.model = chat.model
        line.backend = chat.backend
        line.attempts = chat.attempts
        line.ttftMs = chat.ttftMs
        line.promptTokens = chat.usage?.promptTokens
        line.completionTokens = chat.usage?.completionTokens
        if (chat.estimated === true) line.usageEstimated = true
        if (chat.streamFailed === true) line.streamFailed = true
      }
      const durationMs = Math.round(performance.now() - request.receivedAt)
      line.durationMs = durationMs
      request.log.info(line, finished ? 'request' : request.sendTimedOut ? 'client stopped reading: cut off after server.sendTimeoutMs' : UNFINISHED[status]!)
      onDone?.(request, status, durationMs)
    })
    done()
  })
}
