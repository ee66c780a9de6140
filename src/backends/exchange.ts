import type { IncomingHttpHeaders } from 'node:http'
import { errors, type Dispatcher } from 'undici'
import type { Cancellation } from './pool.js'

// One request to a backend on the chat path, driven through undici's dispatch handler API:
// the answer's chunks are handed over as they arrive, without the Readable stream that
// `request()` wraps around them, which cost a fifth of the CPU of a proxied request.

/** Unread bytes past which the backend's socket is paused until the relay catches up. */
const HIGH_WATER_BYTES = 64 * 1024

export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  body: UpstreamBody
  /** When the request went out, and when its latest answer bytes came (performance.now()). */
  sentAt: number
  lastDataAt: number
}

export interface UpstreamBody extends AsyncIterable<Buffer> {
  /** The whole body as UTF-8 text. */
  text: () => Promise<string>
}

type Waiter = { resolve: () => void, reject: (err: Error) => void }

class Exchange implements Dispatcher.DispatchHandler, UpstreamResponse, UpstreamBody {
  statusCode = 0
  headers: IncomingHttpHeaders = {}
  readonly body = this
  readonly sentAt = performance.now()
  lastDataAt = 0
  private controller: Dispatcher.DispatchController | undefined
  private queue: Buffer[] = []
  private queued = 0
  private ended = false
  private failure: Error | undefined
  /** text() reads the whole body at once: no point pausing the socket for it. */
  private collecting = false
  private waiter: Waiter | undefined
  private readonly onAbort = (): void => { this.controller?.abort(new errors.RequestAbortedError()) }

  constructor (private readonly signal: Cancellation | undefined, private readonly started: { resolve: (res: UpstreamResponse) => void, reject: (err: Error) => void }) {
    signal?.once('abort', this.onAbort)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.signal?.aborted === true) this.onAbort()
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx answers are followed by the real one.
    if (statusCode < 200) return
    this.statusCode = statusCode
    this.headers = headers
    this.started.resolve(this)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.lastDataAt = performance.now()
    this.queue.push(chunk)
    this.queued += chunk.length
    if (this.queued > HIGH_WATER_BYTES && !this.collecting) controller.pause()
    this.wake()
  }

  onResponseEnd (): void {
    this.ended = true
    this.settle()
    this.wake()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.failure = err
    this.settle()
    // Before the status line: the request itself failed.
    this.started.reject(err)
    if (this.waiter !== undefined) {
      const { reject } = this.waiter
      this.waiter = undefined
      reject(err)
    }
  }

  private settle (): void {
    this.signal?.removeListener('abort', this.onAbort)
  }

  private wake (): void {
    if (this.waiter === undefined) return
    const { resolve } = this.waiter
    this.waiter = undefined
    resolve()
  }

  /** Everything received so far as one buffer (empty when nothing is waiting). */
  private take (): Buffer {
    const out = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue, this.queued)
    this.queue = []
    this.queued = 0
    this.controller?.resume()
    return out
  }

  private arrival (): Promise<void> {
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject } })
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.queue.length > 0) yield this.take()
      else if (this.failure !== undefined) throw this.failure
      else if (this.ended) return
      else await this.arrival()
    }
  }

  async text (): Promise<string> {
    this.collecting = true
    this.controller?.resume()
    while (!this.ended) {
      if (this.failure !== undefined) throw this.failure
      await this.arrival()
    }
    return this.take().toString('utf8')
  }
}

/** Sends a request through `dispatcher`; resolves with the status and headers, the body follows. */
export function exchange (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, signal?: Cancellation): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    dispatcher.dispatch(options, new Exchange(signal, { resolve, reject }))
  })
}
