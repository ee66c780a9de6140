import type { Db } from '../store/database.js'
import { utcDay } from './usage-log.js'

// Reports over the usage table: aggregates grouped by any of a fixed set of fields, totals, and
// the raw records newest first. Every query is built from fixed SQL fragments; values from a
// request only ever travel as bound parameters.

/** The fields a report may group by, with the SQL that computes each. */
const GROUP_COLUMNS = {
  day: 'day',
  month: 'substr(day, 1, 7)',
  user: 'user',
  model: 'model',
  key: 'key_id',
  backend: 'backend',
  endpoint: 'endpoint',
} as const

export type GroupField = keyof typeof GROUP_COLUMNS
export const GROUP_FIELDS = Object.keys(GROUP_COLUMNS) as GroupField[]
export const DEFAULT_GROUP_BY: GroupField[] = ['day', 'user', 'model']

/** Which records a report covers; every field narrows it, absent ones do not. */
export interface UsageFilter {
  user?: string | undefined
  model?: string | undefined
  /** An API key's id. */
  key?: string | undefined
  backend?: string | undefined
  /** Earliest request time, ms since the epoch, inclusive. */
  from?: number | undefined
  /** Latest request time, ms since the epoch, exclusive. */
  to?: number | undefined
}

export interface Totals {
  requests: number
  /** Requests that ended with a status of 400 or more (499: the client left). */
  errors: number
  /** Requests whose token counts are estimates (the backend reported none). */
  estimated: number
  promptTokens: number
  completionTokens: number
  totalTokens: number
  /** Mean over the requests, whole ms; null when there were none. */
  avgDurationMs: number | null
  /** Mean over the requests that produced a first token; null when none did. */
  avgTtftMs: number | null
}

export type ReportRow = Partial<Record<GroupField, string | null>> & Totals

export interface Report { rows: ReportRow[], totals: Totals }

/** One request as the records listing shows it. */
export interface UsageEntry {
  id: number
  /** When the request arrived, ISO 8601 UTC. */
  time: string
  user: string
  role: string
  key: string | null
  model: string
  backend: string | null
  endpoint: string
  promptTokens: number
  completionTokens: number
  totalTokens: number
  estimated: boolean
  durationMs: number
  ttftMs: number | null
  status: number
}

export const TOTAL_COLUMNS: Array<keyof Totals> = ['requests', 'errors', 'estimated', 'promptTokens', 'completionTokens', 'totalTokens', 'avgDurationMs', 'avgTtftMs']
export const ENTRY_COLUMNS: Array<keyof UsageEntry> = ['id', 'time', 'user', 'role', 'key', 'model', 'backend', 'endpoint', 'promptTokens', 'completionTokens', 'totalTokens', 'estimated', 'durationMs', 'ttftMs', 'status']

const AGGREGATES = `COUNT(*) AS requests, COALESCE(SUM(status >= 400), 0) AS errors, COALESCE(SUM(estimated), 0) AS estimated,
  COALESCE(SUM(prompt_tokens), 0) AS promptTokens, COALESCE(SUM(completion_tokens), 0) AS completionTokens,
  ROUND(AVG(duration_ms)) AS avgDurationMs, ROUND(AVG(ttft_ms)) AS avgTtftMs`

interface Where { sql: string, params: Array<string | number> }

function where (filter: UsageFilter): Where {
  const terms: string[] = []
  const params: Array<string | number> = []
  const equal = (column: string, value: string | undefined): void => {
    if (value === undefined) return
    terms.push(`${column} = ?`)
    params.push(value)
  }
  equal('user', filter.user)
  equal('model', filter.model)
  equal('key_id', filter.key)
  equal('backend', filter.backend)
  // The day bounds repeat the time bounds so that SQLite can use the indexes on day.
  if (filter.from !== undefined) {
    terms.push('day >= ?', 'ts >= ?')
    params.push(utcDay(filter.from), filter.from)
  }
  if (filter.to !== undefined) {
    terms.push('day <= ?', 'ts < ?')
    params.push(utcDay(filter.to - 1), filter.to)
  }
  return { sql: terms.length === 0 ? '' : `WHERE ${terms.join(' AND ')}`, params }
}

/** Adds totalTokens beside the other token counts (key order is the order JSON shows). */
function withTotal<T extends Omit<Totals, 'totalTokens'>> (row: T): T & Totals {
  const { avgDurationMs, avgTtftMs, ...rest } = row
  return { ...rest, totalTokens: row.promptTokens + row.completionTokens, avgDurationMs, avgTtftMs } as T & Totals
}

/** Requests, errors, tokens and mean times of the records the filter selects. */
export function totals (db: Db, filter: UsageFilter = {}): Totals {
  const { sql, params } = where(filter)
  return withTotal(db.prepare(`SELECT ${AGGREGATES} FROM usage ${sql}`).get(...params) as Omit<Totals, 'totalTokens'>)
}

/**
 * Today's (UTC) totals of one user, for one model or all: what a token-usage page or a quota
 * check asks. Reads only what is written: flush the UsageLog first to include the last moments.
 */
export function dayTotals (db: Db, user: string, model?: string, now = Date.now()): Totals {
  const day = utcDay(now)
  const from = Date.parse(`${day}T00:00:00Z`)
  return totals(db, { user, model, from, to: from + 86_400_000 })
}

/** Aggregates by the given fields (in that order, sorted by them), and the totals over all rows. */
export function report (db: Db, filter: UsageFilter, groupBy: GroupField[] = DEFAULT_GROUP_BY): Report {
  const { sql, params } = where(filter)
  const fields = groupBy.map((f) => `${GROUP_COLUMNS[f]} AS "${f}"`).join(', ')
  const positions = groupBy.map((_, i) => i + 1).join(', ')
  const rows = db.prepare(`SELECT ${fields}, ${AGGREGATES} FROM usage ${sql} GROUP BY ${positions} ORDER BY ${positions}`)
    .all(...params) as Array<ReportRow & Omit<Totals, 'totalTokens'>>
  return { rows: rows.map(withTotal), totals: totals(db, filter) }
}

interface EntryRow {
  id: number, ts: number, user: string, role: string, key_id: string | null, model: string, backend: string | null, endpoint: string,
  prompt_tokens: number, completion_tokens: number, estimated: number, duration_ms: number, ttft_ms: number | null, status: number
}

/** The records the filter selects, newest first, a page at a time; `total` counts them all. */
export function records (db: Db, filter: UsageFilter, page: { limit: number, offset: number }): { records: UsageEntry[], total: number } {
  const { sql, params } = where(filter)
  const rows = db.prepare(`SELECT * FROM usage ${sql} ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?`).all(...params, page.limit, page.offset) as EntryRow[]
  const total = db.prepare(`SELECT COUNT(*) FROM usage ${sql}`).pluck().get(...params) as number
  return {
    total,
    records: rows.map((r) => ({
      id: r.id,
      time: new Date(r.ts).toISOString(),
      user: r.user,
      role: r.role,
      key: r.key_id,
      model: r.model,
      backend: r.backend,
      endpoint: r.endpoint,
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      totalTokens: r.prompt_tokens + r.completion_tokens,
      estimated: r.estimated === 1,
      durationMs: r.duration_ms,
      ttftMs: r.ttft_ms,
      status: r.status,
    })),
  }
}
