import type { Metric, Registry } from 'prom-client'
import { ByLabels, labelObject } from './labels.js'

// A histogram kept in plain arrays per label combination and handed to prom-client only when
// scraped. prom-client's own Histogram hashes the label object and validates it on every
// observation, which the chat path would pay for on each request; here an observation is a short
// bucket search and two additions. The exposition is prom-client's: the registry renders what
// get() returns exactly as it renders its Histogram (same lines, label order, values).

/** The observations of one label combination. */
export class HistogramChild {
  /** Per bucket (not cumulative); one more slot at the end for values above the last bound. */
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor (private readonly bounds: readonly number[], readonly labels: Readonly<Record<string, string>>) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    // prom-client throws on these; here that would be an exception in a socket's close listener.
    if (!Number.isFinite(value)) return
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

interface Sample { value: number, labels: Record<string, string | number>, metricName: string }

export interface HistogramOptions { name: string, help: string, labelNames: readonly string[], buckets: readonly number[], registers: Registry[] }

/**
 * Registered like any prom-client metric (`registry.registerMetric`): the registry asks a metric
 * only for `name`, `help`, `type`, `get()` and `reset()`.
 */
export class PlainHistogram {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly labelNames: readonly string[]
  private readonly bounds: readonly number[]
  private readonly children: ByLabels<HistogramChild>

  constructor (options: HistogramOptions) {
    this.name = options.name
    this.help = options.help
    this.labelNames = options.labelNames
    const bounds = this.bounds = [...options.buckets]
    this.children = new ByLabels((values) => new HistogramChild(bounds, labelObject(options.labelNames, values)))
    // prom-client's Metric type lists its own classes only; the registry itself duck-types.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric)
  }

  /** The child of these label values (in labelNames' order), made on first use. */
  labels (...values: string[]): HistogramChild {
    return this.children.get(values)
  }

  reset (): void {
    this.children.clear()
  }

  /** What prom-client's Histogram.get() returns: per child the cumulative buckets with `le` first, +Inf, _sum, _count. */
  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Sample[] }> {
    const bucket = `${this.name}_bucket`
    const values: Sample[] = []
    for (const child of this.children.values()) {
      let cumulative = 0
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += child.counts[i]!
        values.push({ value: cumulative, labels: { le: this.bounds[i]!, ...child.labels }, metricName: bucket })
      }
      values.push({ value: child.count, labels: { le: '+Inf', ...child.labels }, metricName: bucket })
      values.push({ value: child.sum, labels: { ...child.labels }, metricName: `${this.name}_sum` })
      values.push({ value: child.count, labels: { ...child.labels }, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
