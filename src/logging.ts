import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import type { Config } from './config/schema.js'
import type { ChatRecord } from './relay/usage.js'

declare module 'fastify' {
  interface FastifyRequest { chat: ChatRecord | undefined }
}

// Log lines gather in a buffer written out at 8 KiB or every quarter second, whichever comes
// first, and on close: a blocking write per request cost a sixth of the CPU at high rates.
const LOG_BUFFER_BYTES = 8192
const LOG_FLUSH_MS = 250

export interface LogDestination {
  stream: DestinationStream
  /** Writes out what is buffered and stops the periodic flush. */
  close: () => void
}

export function logDestination (): LogDestination {
  const stream = pino.destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES })
  const timer = setInterval(() => { stream.flush() }, LOG_FLUSH_MS)
  timer.unref()
  return {
    stream,
    close: () => {
      clearInterval(timer)
      stream.flushSync()
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

/** One line per request, written when the connection is done with it (finished or aborted). */
export function requestLogLine (app: FastifyInstance): void {
  app.decorateRequest('chat', undefined)
  // Callback-style hooks: an async hook costs Fastify a promise and extra ticks per request.
  app.addHook('onRequest', (request, reply, done) => {
    const started = performance.now()
    reply.raw.once('close', () => {
      const res = reply.raw
      const finished = res.writableFinished
      const chat = request.chat
      // Built flat, without spreads: this runs for every request.
      const line: Record<string, unknown> = {
        method: request.method,
        url: request.url,
        status: finished ? res.statusCode : 499,
        user: request.principal?.sub,
      }
      if (chat !== undefined) {
        line.model = chat.model
        line.backend = chat.backend
        line.attempts = chat.attempts
        line.ttftMs = chat.ttftMs
        line.promptTokens = chat.usage?.promptTokens
        line.completionTokens = chat.usage?.completionTokens
        if (chat.estimated === true) line.usageEstimated = true
      }
      line.durationMs = Math.round(performance.now() - started)
      request.log.info(line, finished ? 'request' : 'request aborted by client')
    })
    done()
  })
}
