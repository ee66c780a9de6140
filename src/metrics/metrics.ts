import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import type { Pool } from '../backends/pool.js'
import type { ReloadHistory } from '../config/reload-result.js'
import type { Certificates } from '../tls/certificates.js'
import { PlainHistogram, type HistogramChild } from './histogram.js'
import { ByLabels, labelObject } from './labels.js'

// Prometheus metrics (prom-client). Per-request figures are counted once per request, when its log
// line is written (logging.ts); what describes the gateway's state now (slots, health, queues,
// loaded models, certificates) is read at scrape time, so the chat path pays nothing for it.

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The metrics' `surface` label of a route that is not under /v1, /api or the BioChatter prefix. */
    surface?: string
  }
}

/**
 * A counter summed in a plain number per label combination (found a Map per label, labels.ts) and
 * handed to prom-client when scraped: prom-client hashes the labels on every increment, which the
 * chat path would pay for.
 */
function tally (options: { name: string, help: string, labelNames: string[], registers: Registry[] }): (value: number, ...labels: string[]) => void {
  const sums = new ByLabels((values) => ({ labels: labelObject(options.labelNames, values), value: 0 }))
  new Counter({
    ...options,
    collect () {
      this.reset()
      for (const { labels, value } of sums.values()) this.inc(labels, value)
    },
  })
  return (value, ...labels) => { sums.get(labels).value += value }
}

export interface MetricsSources {
  pool: Pool
  certificates?: Certificates | undefined
  biochatterPrefix?: string | undefined
  /** Config reloads so far (read at scrape time: the history may be replaced between scrapes). */
  reloads?: (() => ReloadHistory) | undefined
}

export class GatewayMetrics {
  readonly registry = new Registry()
  private readonly requests
  private readonly duration
  private readonly ttft
  private readonly tokens
  private readonly tokensPerSecond
  private readonly rejections
  readonly queueWait: (model: string) => HistogramChild
  private readonly upstreamErrors
  private readonly retries

  constructor (private readonly sources: MetricsSources) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'chatgate_' })
    this.requests = tally({ name: 'chatgate_requests_total', help: 'Requests answered, by surface, model, backend and status', labelNames: ['surface', 'model', 'backend', 'status'], registers })
    // Histograms in plain arrays (histogram.ts): prom-client's would hash labels on every observation.
    const duration = new PlainHistogram({ name: 'chatgate_request_duration_seconds', help: 'Time from request to the last byte of the answer', labelNames: ['surface'], buckets: SECONDS, registers })
    this.duration = (surface: string) => duration.labels(surface)
    const ttft = new PlainHistogram({ name: 'chatgate_time_to_first_token_seconds', help: 'Time from request to the first answer bytes of a chat', labelNames: ['model', 'backend'], buckets: SECONDS, registers })
    this.ttft = (model: string, backend: string) => ttft.labels(model, backend)
    this.tokens = tally({ name: 'chatgate_tokens_total', help: 'Tokens of chats, by direction (prompt: in, completion: out)', labelNames: ['direction', 'model', 'backend'], registers })
    const tps = new PlainHistogram({ name: 'chatgate_tokens_per_second', help: 'Completion tokens per second of streamed chats, after the first token', labelNames: ['model', 'backend'], buckets: [1, 5, 10, 20, 40, 80, 160, 320, 640], registers })
    this.tokensPerSecond = (model: string, backend: string) => tps.labels(model, backend)
    this.rejections = tally({ name: 'chatgate_rejections_total', help: 'Requests refused by a limit of ChatGate\'s: rate (requests per minute), quota (tokens) or concurrency (chats at once)', labelNames: ['reason'], registers })
    const queueWait = new PlainHistogram({ name: 'chatgate_queue_wait_seconds', help: 'Time chats waited for a free backend slot (only those that waited)', labelNames: ['model'], buckets: SECONDS, registers })
    this.queueWait = (model) => queueWait.labels(model)
    this.upstreamErrors = tally({ name: 'chatgate_upstream_errors_total', help: 'Failed backend calls, by backend and error code', labelNames: ['backend', 'code'], registers })
    this.retries = tally({ name: 'chatgate_upstream_retries_total', help: 'Chats tried again on another backend', labelNames: ['backend'], registers })
    this.stateGauges(registers)
    const reloads = sources.reloads
    if (reloads !== undefined) this.reloadSeries(reloads, registers)
  }

  private stateGauges (registers: Registry[]): void {
    const { pool, certificates } = this.sources
    new Gauge({
      name: 'chatgate_backend_up', help: '1 when the backend answers its health probes, else 0', labelNames: ['backend'], registers,
      // Reset first: a backend a config reload removed must disappear, not keep its last value.
      collect () {
        this.reset()
        for (const b of pool.backends) this.set({ backend: b.name }, b.isUp() ? 1 : 0)
      },
    })
    new Gauge({
      name: 'chatgate_backend_slots_in_use', help: 'Requests running on the backend now', labelNames: ['backend'], registers,
      collect () {
        this.reset()
        for (const b of pool.backends) this.set({ backend: b.name }, b.inFlight)
      },
    })
    new Gauge({
      name: 'chatgate_backend_slots', help: 'Requests the backend may run at once (backends[].maxConcurrent)', labelNames: ['backend'], registers,
      collect () {
        this.reset()
        for (const b of pool.backends) this.set({ backend: b.name }, b.config.maxConcurrent)
      },
    })
    new Gauge({
      name: 'chatgate_model_loaded', help: 'Models each backend serves: 1 loaded in memory (as last seen), 0 installed only', labelNames: ['backend', 'model'], registers,
      collect () {
        this.reset()
        for (const b of pool.backends) {
          for (const [key, entry] of b.models) if (key === entry.upstream) this.set({ backend: b.name, model: key }, b.loaded.has(key) ? 1 : 0)
        }
      },
    })
    new Gauge({
      name: 'chatgate_queue_depth', help: 'Chats waiting for a free backend slot, by model', labelNames: ['model'], registers,
      collect () {
        this.reset()
        for (const [model, n] of pool.queueDepths()) this.set({ model }, n)
      },
    })
    new Gauge({
      name: 'chatgate_certificate_expiry_seconds', help: 'Seconds until the certificate in service expires (negative: expired)', labelNames: ['names'], registers,
      collect () {
        this.reset()
        for (const s of certificates?.status() ?? []) if (s.notAfter !== undefined) this.set({ names: s.names.join(',') }, (Date.parse(s.notAfter) - Date.now()) / 1000)
      },
    })
  }

  /** What config reloads did, read from the history at scrape time. */
  private reloadSeries (reloads: () => ReloadHistory, registers: Registry[]): void {
    new Counter({
      name: 'chatgate_config_reloads_total', help: 'Config reloads, by result (failure: the file was invalid and the running config stayed)', labelNames: ['result'], registers,
      collect () {
        const h = reloads()
        this.reset()
        // Both results always present: a rate over a series that appears late misses its first increase.
        this.inc({ result: 'success' }, h.succeeded)
        this.inc({ result: 'failure' }, h.failed)
      },
    })
    new Gauge({
      name: 'chatgate_config_last_reload_successful', help: '1 when the last config reload applied (or none has happened), 0 when it failed', registers,
      collect () { this.set(reloads().last?.ok === false ? 0 : 1) },
    })
    new Gauge({
      name: 'chatgate_config_loaded_timestamp_seconds', help: 'When the running config was loaded: start or the last successful reload (seconds since the epoch)', registers,
      collect () { this.set(reloads().loadedAt / 1000) },
    })
  }

  private surfaceOf (request: FastifyRequest): string {
    const configured = request.routeOptions.config.surface
    if (configured !== undefined) return configured
    const route = request.routeOptions.url
    if (route === undefined) return 'none'
    const prefix = this.sources.biochatterPrefix
    if (prefix !== undefined && route.startsWith(prefix + '/')) return 'biochatter'
    if (route.startsWith('/v1/')) return 'openai'
    if (route.startsWith('/api/') || route === '/') return 'ollama'
    return 'gateway'
  }

  /** A request is done (called with its log line). */
  observe (request: FastifyRequest, status: number, durationMs: number): void {
    const surface = this.surfaceOf(request)
    const chat = request.chat
    // Model and backend only once a backend took the chat: a requested name is anyone's text.
    const served = chat?.backend !== undefined
    const model = served ? chat.model : ''
    const backend = served ? chat.backend! : ''
    this.requests(1, surface, model, backend, String(status))
    this.duration(surface).observe(durationMs / 1000)
    if (request.refusedBy !== undefined) this.rejections(1, request.refusedBy)
    if (!served) return
    if (chat.ttftMs !== undefined) this.ttft(model, backend).observe(chat.ttftMs / 1000)
    const usage = chat.usage
    if (usage === undefined) return
    this.tokens(usage.promptTokens, 'prompt', model, backend)
    this.tokens(usage.completionTokens, 'completion', model, backend)
    // Measurable on streams only: a whole answer's tokens all arrive at once.
    const generatingMs = durationMs - (chat.ttftMs ?? durationMs)
    if ((chat.pieces ?? 0) > 1 && generatingMs > 0) this.tokensPerSecond(model, backend).observe(usage.completionTokens / (generatingMs / 1000))
  }

  upstreamFailed (backend: string, code: string, retried: boolean): void {
    this.upstreamErrors(1, backend, code)
    if (retried) this.retries(1, backend)
  }

  waited (model: string, ms: number): void {
    this.queueWait(model).observe(ms / 1000)
  }
}
