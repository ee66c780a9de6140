import type { Config } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { Backend, type ModelEntry } from './backend.js'
import { discover } from './discovery.js'

/** A slot on a backend, held for one upstream request. */
export interface Lease {
  backend: Backend
  entry: ModelEntry
  release: () => void
  /** How long the chat waited in the queue for this slot (ms), when it had to. */
  waitedMs?: number
}

interface Waiter {
  model: string
  exclude: ReadonlySet<Backend>
  grant: (lease: Lease) => void
  fail: (err: GatewayError) => void
}

/** What tells a waiting request that its client left (an EventEmitter firing 'abort'). */
export interface Cancellation {
  readonly aborted: boolean
  once: (event: 'abort', listener: () => void) => unknown
  removeListener: (event: 'abort', listener: () => void) => unknown
}

// A model nobody serves triggers a re-discovery, but not more often than this.
const UNKNOWN_MODEL_REFRESH_MS = 1000

/** Told of what the metrics count: waits for a slot, failed backend calls. */
export interface PoolObserver {
  waited: (model: string, ms: number) => void
  upstreamFailed: (backend: string, code: string, retried: boolean) => void
}

/**
 * The backends, what they serve, and their concurrency slots. Requests go to a healthy backend
 * serving the model with a free slot, preferring one that has the model loaded, then the least
 * busy; when all are full they wait in a bounded FIFO queue per model.
 */
export class Pool {
  /** The backends requests may go to; a reload replaces the array (see reconfigure). */
  backends: Backend[]
  observer: PoolObserver | undefined
  /** Backends a reload removed that still run requests: closed when their last one ends. */
  private readonly draining = new Set<Backend>()
  private waiters: Waiter[] = []
  private timer: NodeJS.Timeout | undefined
  private lastUnknownRefresh = 0
  private refreshing: Promise<void> | undefined
  private rotation = 0

  constructor (private config: Config) {
    this.backends = config.backends.map((b) => new Backend(b, config.routing.downBackoffMs))
  }

  get aliases (): Record<string, string> {
    return this.config.models.aliases
  }

  /** Starts periodic discovery (which is also the active health probe). */
  start (): void {
    void this.refresh()
    this.startTimer()
  }

  private startTimer (): void {
    clearInterval(this.timer)
    this.timer = setInterval(() => { void this.refresh() }, this.config.routing.discoveryIntervalMs)
    this.timer.unref()
  }

  /**
   * Takes a reloaded config at once: new requests see only its backends, aliases and routing.
   * A backend whose connection settings are unchanged stays as it is (its slots in use, health
   * and models), with its new slot count; any other is replaced: the old one finishes the
   * requests it runs (streams end where they started), then closes. Resolves when the backends
   * it added have been asked what they serve.
   */
  async reconfigure (config: Config): Promise<void> {
    const current = new Map(this.backends.map((b) => [b.name, b]))
    const added: Backend[] = []
    this.backends = config.backends.map((settings) => {
      const kept = current.get(settings.name)
      if (kept !== undefined && kept.takes(settings)) {
        current.delete(settings.name)
        kept.update(settings, config.routing.downBackoffMs)
        return kept
      }
      const fresh = new Backend(settings, config.routing.downBackoffMs)
      added.push(fresh)
      return fresh
    })
    for (const gone of current.values()) this.retire(gone)
    const intervalChanged = config.routing.discoveryIntervalMs !== this.config.routing.discoveryIntervalMs
    this.config = config
    if (this.timer !== undefined && intervalChanged) this.startTimer()
    // More slots than before, or waiters for a model a new backend serves.
    this.backends.forEach((b) => this.handOver(b))
    await Promise.all(added.map((b) => this.rediscover(b)))
    this.failOrphans()
  }

  /** Waiters for a model no backend serves any more (a reload removed it) are told at once. */
  private failOrphans (): void {
    for (const waiter of [...this.waiters]) {
      if (this.backends.some((b) => b.lookup(waiter.model) !== undefined)) continue
      this.dequeue(waiter)
      waiter.fail(this.notFound(waiter.model))
    }
  }

  private retire (backend: Backend): void {
    backend.retired = true
    if (backend.inFlight === 0) void backend.close()
    else this.draining.add(backend)
  }

  /** Re-discovers every backend; concurrent callers share one round. */
  refresh (): Promise<void> {
    this.refreshing ??= Promise.all(this.backends.map(discover)).then(() => {
      this.refreshing = undefined
      this.backends.forEach((b) => this.handOver(b))
    })
    return this.refreshing
  }

  /** A fresh look at one backend (after a model was pulled or deleted there), not a shared round. */
  async rediscover (backend: Backend): Promise<void> {
    await discover(backend)
    this.handOver(backend)
  }

  resolveAlias (model: string): string {
    return this.aliases[model] ?? model
  }

  byName (name: string): Backend | undefined {
    return this.backends.find((b) => b.name === name)
  }

  /** Backends that serve `model` (already alias-resolved); re-discovers once if none is known. */
  async servers (model: string): Promise<Backend[]> {
    let found = this.backends.filter((b) => b.lookup(model) !== undefined)
    if (found.length === 0 && Date.now() - this.lastUnknownRefresh > UNKNOWN_MODEL_REFRESH_MS) {
      this.lastUnknownRefresh = Date.now()
      await this.refresh()
      found = this.backends.filter((b) => b.lookup(model) !== undefined)
    }
    return found
  }

  /**
   * The backend to send `model` to now: among those serving it with a free slot, the ones that
   * already have it loaded, then the least busy; ties take turns. One pass: this runs per request.
   */
  private pick (model: string, exclude: ReadonlySet<Backend>): Backend | undefined {
    const now = Date.now()
    let tied: Backend[] = []
    let bestLoaded = false
    let bestLoad = Infinity
    for (const b of this.backends) {
      if (exclude.has(b) || !b.isUp(now) || !b.hasFreeSlot) continue
      const entry = b.lookup(model)
      if (entry === undefined) continue
      const loaded = b.loaded.has(entry.upstream)
      const load = b.inFlight / b.maxConcurrent
      if ((loaded && !bestLoaded) || (loaded === bestLoaded && load < bestLoad)) {
        tied = [b]
        bestLoaded = loaded
        bestLoad = load
      } else if (loaded === bestLoaded && load === bestLoad) tied.push(b)
    }
    return tied.length === 0 ? undefined : tied[this.rotation++ % tied.length]
  }

  private lease (backend: Backend, model: string): Lease {
    backend.inFlight += 1
    let released = false
    return {
      backend,
      entry: backend.lookup(model)!,
      release: () => {
        if (released) return
        released = true
        backend.inFlight -= 1
        if (!backend.retired) this.handOver(backend)
        else if (backend.inFlight === 0 && this.draining.delete(backend)) void backend.close()
      },
    }
  }

  /** Gives a freed slot to the oldest waiter that can use it. */
  private handOver (backend: Backend): void {
    while (!backend.retired && backend.hasFreeSlot && backend.isUp()) {
      const i = this.waiters.findIndex((w) => !w.exclude.has(backend) && backend.lookup(w.model) !== undefined)
      if (i === -1) return
      const [waiter] = this.waiters.splice(i, 1)
      waiter!.grant(this.lease(backend, waiter!.model))
    }
  }

  /** The common case, decided without waiting on anything: a known model with a free slot. */
  tryAcquire (model: string, exclude: ReadonlySet<Backend>): Lease | undefined {
    const backend = this.pick(model, exclude)
    return backend === undefined ? undefined : this.lease(backend, model)
  }

  /**
   * A slot on a backend serving `model`. Waits in the model's queue when every slot is busy.
   * Throws 404 when no backend serves the model, 503 when none is healthy or the queue is full
   * or the wait timed out.
   */
  async acquire (model: string, signal: Cancellation, exclude: ReadonlySet<Backend> = new Set()): Promise<Lease> {
    const free = this.tryAcquire(model, exclude)
    if (free !== undefined) return free
    const servers = (await this.servers(model)).filter((b) => !exclude.has(b))
    if (servers.length === 0) throw this.notFound(model)
    const backend = this.pick(model, exclude)
    if (backend !== undefined) return this.lease(backend, model)
    const now = Date.now()
    if (!servers.some((b) => b.isUp(now))) {
      const retry = Math.max(1, Math.ceil((Math.min(...servers.map((b) => b.downUntil)) - now) / 1000))
      throw new GatewayError(503, `no healthy backend serves model '${model}'`, 'backend_unavailable', retry)
    }
    if (signal.aborted) throw new GatewayError(499, 'request canceled', 'client_closed')
    const { maxWaiting, queueTimeoutMs } = this.config.routing
    const busy = (): GatewayError => new GatewayError(503, `server busy: every backend slot for model '${model}' is taken; try again shortly`, 'server_busy', Math.max(1, Math.ceil(queueTimeoutMs / 1000)))
    if (this.queueLength(model) >= maxWaiting) throw busy()
    const queuedAt = performance.now()
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        model,
        exclude,
        grant: (lease) => {
          cleanup()
          lease.waitedMs = performance.now() - queuedAt
          this.observer?.waited(model, lease.waitedMs)
          resolve(lease)
        },
        fail: (err) => { cleanup(); reject(err) },
      }
      const timer = setTimeout(() => { this.dequeue(waiter); waiter.fail(busy()) }, queueTimeoutMs)
      const onAbort = (): void => { this.dequeue(waiter); waiter.fail(new GatewayError(499, 'request canceled', 'client_closed')) }
      const cleanup = (): void => { clearTimeout(timer); signal.removeListener('abort', onAbort) }
      signal.once('abort', onAbort)
      this.waiters.push(waiter)
    })
  }

  /** 404 when every backend answered and none has the model; 503 when one that might could not be asked. */
  private notFound (model: string): GatewayError {
    const now = Date.now()
    const unreachable = this.backends.filter((b) => !b.isUp(now))
    if (unreachable.length === 0) return new GatewayError(404, `model '${model}' not found`, 'model_not_found')
    const retry = Math.max(1, Math.ceil((Math.min(...unreachable.map((b) => b.downUntil)) - now) / 1000))
    const names = unreachable.map((b) => `${b.name} (${b.lastError ?? 'down'})`).join(', ')
    return new GatewayError(503, `model '${model}' is not on any reachable backend; unreachable: ${names}`, 'backend_unavailable', retry)
  }

  private dequeue (waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter)
    if (i !== -1) this.waiters.splice(i, 1)
  }

  /** Waiting chats per model. */
  queueDepths (): Map<string, number> {
    const depths = new Map<string, number>()
    for (const w of this.waiters) depths.set(w.model, (depths.get(w.model) ?? 0) + 1)
    return depths
  }

  queueLength (model: string): number {
    return this.waiters.reduce((n, w) => n + (w.model === model ? 1 : 0), 0)
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    for (const w of this.waiters.splice(0)) w.fail(new GatewayError(503, 'gateway shutting down', 'shutting_down'))
    await Promise.all([...this.backends, ...this.draining].map((b) => b.close()))
  }
}
