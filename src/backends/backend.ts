import { Pool, type Dispatcher } from 'undici'
import type { BackendConfig } from '../config/schema.js'
import { exchange, type UpstreamResponse } from './exchange.js'
import type { Cancellation } from './pool.js'

export type WireProtocol = 'ollama' | 'openai'

/** What the pool knows about one model on one backend, for listings. */
export interface ModelEntry {
  /** The id to send upstream (Ollama name with tag; Xinference uid). */
  upstream: string
  /** Raw listing entry from the backend (/api/tags item or /v1/models item). */
  listing: Record<string, unknown>
}

const MAX_BACKOFF_MS = 60_000

/** One configured backend: its connection pool, what it serves, its health and its busy slots. */
export class Backend {
  readonly name: string
  readonly protocol: WireProtocol
  readonly dispatcher: Pool
  readonly origin: string
  private readonly basePath: string
  inFlight = 0
  failures = 0
  downUntil = 0
  lastError: string | undefined
  version: string | undefined
  /** Request name (with and without `:latest`, Xinference uid and model_name) → entry. */
  models = new Map<string, ModelEntry>()
  /** Upstream ids currently loaded in memory (Ollama /api/ps). */
  loaded = new Set<string>()
  discovered = false
  /** Removed by a config reload: takes no new requests, closes after its last one. */
  retired = false

  /** `config` changes only through `update` (a reload). */
  constructor (public config: BackendConfig, private backoffMs: number) {
    this.name = config.name
    this.protocol = config.type === 'ollama' ? 'ollama' : 'openai'
    const url = new URL(config.url)
    this.origin = url.origin
    this.basePath = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '')
    this.dispatcher = new Pool(this.origin, {
      connectTimeout: config.connectTimeoutMs,
      headersTimeout: config.firstByteTimeoutMs,
      bodyTimeout: config.idleTimeoutMs,
      keepAliveTimeout: 30_000,
    })
    this.postHeaders = this.headers()
  }

  /** Whether a reloaded backend entry can be served by this one: everything but its slot count is the same. */
  takes (next: BackendConfig): boolean {
    const settings = new Set([...Object.keys(this.config), ...Object.keys(next)]) as Set<keyof BackendConfig>
    for (const key of settings) if (key !== 'maxConcurrent' && this.config[key] !== next[key]) return false
    return true
  }

  /** A reloaded entry that `takes` accepted: the new slot count (and back-off) apply from now on. */
  update (next: BackendConfig, backoffMs: number): void {
    this.config = next
    this.backoffMs = backoffMs
  }

  /** Headers of every chat and embedding request, built once. */
  private readonly postHeaders: Record<string, string>

  path (p: string): string {
    return this.basePath + p
  }

  headers (extra?: Record<string, string>): Record<string, string> {
    return {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(this.config.apiKey !== undefined && { authorization: `Bearer ${this.config.apiKey}` }),
      ...extra,
    }
  }

  get maxConcurrent (): number {
    return this.config.maxConcurrent
  }

  isUp (now = Date.now()): boolean {
    return now >= this.downUntil
  }

  get hasFreeSlot (): boolean {
    return this.inFlight < this.config.maxConcurrent
  }

  lookup (model: string): ModelEntry | undefined {
    return this.models.get(model) ?? (this.protocol === 'ollama' && !model.includes(':') ? this.models.get(`${model}:latest`) : undefined)
  }

  markDown (reason: string): void {
    this.failures += 1
    this.lastError = reason
    this.downUntil = Date.now() + Math.min(this.backoffMs * 2 ** (this.failures - 1), MAX_BACKOFF_MS)
  }

  markUp (): void {
    this.failures = 0
    this.downUntil = 0
    this.lastError = undefined
  }

  request (options: Omit<Dispatcher.RequestOptions, 'origin'>): Promise<Dispatcher.ResponseData> {
    return this.dispatcher.request({ ...options, path: this.path(options.path) })
  }

  /** A POST on the chat path: the answer's body is read chunk by chunk as it arrives. */
  post (path: string, body: string, signal: Cancellation): Promise<UpstreamResponse> {
    return exchange(this.dispatcher, { method: 'POST', path: this.path(path), headers: this.postHeaders, body }, signal)
  }

  close (): Promise<void> {
    return this.dispatcher.close()
  }
}
