import { Transform, type TransformCallback } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GatewayError } from '../errors.js'

// Request bodies of proxied routes reach the app byte for byte and as they arrive: the app's root
// parser reads every body as JSON text, which would turn an upload into a 400 (or, for text,
// re-encode it) and hold the whole file in memory first. Fastify enforces bodyLimit only on bodies
// it reads itself, so the route's limit is counted here.

const cutOff = new WeakSet<FastifyRequest>()

export const tooLarge = (limit: number): GatewayError =>
  new GatewayError(413, `request body is larger than this app accepts (${limit} bytes)`, 'request_too_large')

/** Whether the request's body was stopped for being over the route's bodyLimit. */
export const wasCutOff = (request: FastifyRequest): boolean => cutOff.has(request)

/** Passes chunks on until more than `limit` bytes went through, then fails with a 413. */
class Limit extends Transform {
  private seen = 0

  constructor (private readonly limit: number, private readonly onOver: () => void) {
    super()
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen <= this.limit) {
      done(null, chunk)
      return
    }
    this.onOver()
    done(tooLarge(this.limit))
  }
}

/** In `app`'s context (and those below it): every body, of any type, is a stream for the upstream. */
export function passBodiesThrough (app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    // Known too large from the start: refused before the app sees a byte.
    if (Number(request.headers['content-length']) > bodyLimit) {
      done(tooLarge(bodyLimit))
      return
    }
    const body = new Limit(bodyLimit, () => cutOff.add(request))
    // The client leaving mid-upload ends the upstream request too (an error, not a short body).
    payload.once('close', () => {
      if (!payload.complete) body.destroy(new Error('the client left during the upload'))
    })
    done(null, payload.pipe(body))
  })
}
