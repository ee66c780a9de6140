import type { OutgoingHttpHeaders } from 'node:http'
import { EventEmitter } from 'node:events'
import type { FastifyReply } from 'fastify'
import type { UpstreamResponse } from '../backends/exchange.js'
import type { Cancellation } from '../backends/pool.js'
import { serverTiming } from '../metrics/timing.js'

/**
 * The client's side of a streamed answer: headers go out lazily (so errors before the first byte
 * still get a real status), every write honours backpressure, and `signal` aborts the moment the
 * client goes away.
 */
export class ClientStream {
  readonly signal: ClientGone
  /** Headers are out: from here on errors must be written into the stream. */
  started = false
  /** Answer bytes (not just keep-alive comments) are out: no other backend may take over. */
  contentSent = false
  private heartbeat: NodeJS.Timeout | undefined
  /** The backend answer being relayed, and the chat's wait for its slot: the overhead header leaves them out. */
  upstream: UpstreamResponse | undefined
  queuedMs = 0

  constructor (private readonly reply: FastifyReply, private readonly contentType: string, private readonly sendTimeoutMs = 0) {
    this.signal = clientSignal(reply)
  }

  get gone (): boolean {
    return this.signal.aborted
  }

  private start (): void {
    if (this.started) return
    this.started = true
    this.reply.hijack()
    // Headers set earlier on the reply (request id, rate limits) go out with the stream's own.
    const headers = this.reply.getHeaders() as OutgoingHttpHeaders
    headers['content-type'] = this.contentType
    headers['cache-control'] = 'no-cache'
    headers['x-accel-buffering'] = 'no'
    headers['server-timing'] = this.timing()
    this.reply.raw.writeHead(200, headers)
  }

  /** Writes a frame; resolves once the socket can take more (or the client left). */
  async write (data: string | Buffer, isContent = true): Promise<void> {
    if (this.gone) return
    if (isContent) {
      this.contentSent = true
      this.stopHeartbeat()
    }
    this.start()
    const res = this.reply.raw
    if (res.write(data)) return
    await new Promise<void>((resolve) => {
      // A client that stops reading would keep the backend's answer paused, and its slot taken,
      // for ever: past sendTimeoutMs it is cut off, which aborts the backend request (signal).
      const stalled = this.sendTimeoutMs > 0
        ? setTimeout(() => { this.reply.request.sendTimedOut = true; res.destroy() }, this.sendTimeoutMs)
        : undefined
      const done = (): void => { clearTimeout(stalled); res.off('drain', done); res.off('close', done); resolve() }
      res.on('drain', done)
      res.on('close', done)
    })
  }

  /** A whole (non-streamed) JSON answer in one write, with its length. */
  sendWhole (json: string): void {
    if (this.gone) return
    this.started = true
    this.contentSent = true
    this.reply.hijack()
    const headers = this.reply.getHeaders() as OutgoingHttpHeaders
    headers['content-type'] = 'application/json; charset=utf-8'
    headers['content-length'] = Buffer.byteLength(json)
    headers['server-timing'] = this.timing()
    this.reply.raw.writeHead(200, headers)
    this.reply.raw.end(json)
  }

  private timing (): string {
    const res = this.upstream
    // A stream's headers go out with its first piece; a whole answer's once it is complete.
    const upstream = res === undefined ? undefined : { label: 'upstream' as const, ms: (res.lastDataAt === 0 ? performance.now() : res.lastDataAt) - res.sentAt }
    return serverTiming(this.reply.request.receivedAt, upstream, this.queuedMs)
  }

  end (data?: string | Buffer): void {
    this.stopHeartbeat()
    if (this.gone) return
    this.start()
    this.reply.raw.end(data)
  }

  /** SSE comments every `intervalMs` until the first content is written (model loading). */
  startHeartbeat (intervalMs: number, frame: string): void {
    this.heartbeat = setInterval(() => { void this.write(frame, false) }, intervalMs)
  }

  stopHeartbeat (): void {
    clearInterval(this.heartbeat)
    this.heartbeat = undefined
  }
}

/**
 * Emits 'abort' (once) when the client closes the connection before the response finished.
 * undici takes an EventEmitter as a request's signal: one per request costs far less than an
 * AbortController, which showed up at 4% of the CPU under load.
 */
export class ClientGone extends EventEmitter implements Cancellation {
  aborted = false
}

export function clientSignal (reply: FastifyReply): ClientGone {
  const gone = new ClientGone()
  const res = reply.raw
  res.once('close', () => {
    if (answered(res)) return
    gone.aborted = true
    gone.emit('abort')
  })
  return gone
}

/**
 * The whole answer was written and handed on. writableFinished alone is not enough: on an HTTP/2
 * stream the client reset, Node's compatibility response says finished without ever having ended.
 */
export function answered (res: { writableEnded: boolean, writableFinished: boolean }): boolean {
  return res.writableEnded && res.writableFinished
}
