import type { Backend } from '../backends/backend.js'
import type { Cancellation, Lease, Pool } from '../backends/pool.js'
import type { GatewayError } from '../errors.js'
import { UpstreamRefusal } from './upstream.js'

export interface RetryOptions {
  pool: Pool
  model: string
  signal: Cancellation
  retries: number
  /** False once bytes reached the client: no other backend may take over then. */
  mayRetry: () => boolean
  /** Told which backend each attempt went to. */
  onAttempt?: (backend: Backend, attempt: number) => void
}

/**
 * Runs `work` on a leased backend slot; on a retryable refusal (connect error, 503, 429, stale
 * model list) tries another backend serving the model, up to `retries` more times.
 */
export async function onSomeBackend<T> (opts: RetryOptions, work: (lease: Lease) => Promise<T>): Promise<T> {
  const tried = new Set<Backend>()
  let last: GatewayError | undefined
  for (let n = 0; n <= opts.retries; n++) {
    let lease: Lease
    try {
      lease = opts.pool.tryAcquire(opts.model, tried) ?? await opts.pool.acquire(opts.model, opts.signal, tried)
    } catch (err) {
      throw last ?? err
    }
    opts.onAttempt?.(lease.backend, n + 1)
    try {
      return await work(lease)
    } catch (err) {
      if (!(err instanceof UpstreamRefusal)) throw err
      const retrying = err.retryable && opts.mayRetry() && n < opts.retries
      opts.pool.observer?.upstreamFailed(lease.backend.name, err.error.code, retrying)
      if (!err.retryable || !opts.mayRetry()) throw err.error
      if (err.error.statusCode === 404) void opts.pool.refresh()
      last = err.error
      tried.add(lease.backend)
    } finally {
      lease.release()
    }
  }
  throw last!
}
