import type { Backend } from '../backends/backend.js'
import type { Pool } from '../backends/pool.js'

// What the dashboard shows of the pool: each backend's health, slots and models, and the queues.

export interface BackendStatus {
  name: string
  type: Backend['config']['type']
  /** Scheme, host and port only: never a path, user part or key. */
  url: string
  up: boolean
  /** Its models were listed at least once. */
  discovered: boolean
  lastError: string | null
  /** While down: when it is tried again (ISO 8601). */
  downUntil: string | null
  inFlight: number
  maxConcurrent: number
  version: string | null
  /** Installed models by their upstream id, `loaded` when in memory now (Ollama /api/ps). */
  models: Array<{ name: string, loaded: boolean }>
}

export interface QueueStatus { model: string, waiting: number }

export function backendStatus (backend: Backend, now = Date.now()): BackendStatus {
  // Several request names (with and without :latest, uid and model name) lead to one entry.
  const upstreams = new Set<string>()
  for (const entry of backend.models.values()) upstreams.add(entry.upstream)
  const up = backend.isUp(now)
  return {
    name: backend.name,
    type: backend.config.type,
    url: backend.origin,
    up,
    discovered: backend.discovered,
    lastError: backend.lastError ?? null,
    downUntil: up ? null : new Date(backend.downUntil).toISOString(),
    inFlight: backend.inFlight,
    maxConcurrent: backend.maxConcurrent,
    version: backend.version ?? null,
    models: [...upstreams].sort().map((name) => ({ name, loaded: backend.loaded.has(name) })),
  }
}

export function poolStatus (pool: Pool): { backends: BackendStatus[], queues: QueueStatus[] } {
  const now = Date.now()
  const queues = [...pool.queueDepths()].map(([model, waiting]) => ({ model, waiting })).sort((a, b) => a.model.localeCompare(b.model))
  return { backends: pool.backends.map((b) => backendStatus(b, now)), queues }
}
