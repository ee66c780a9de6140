import { GatewayError } from '../errors.js'
import { GROUP_FIELDS, DEFAULT_GROUP_BY, type GroupField, type UsageFilter } from './report.js'

// The query parameters of the usage routes, turned into a report's filter and grouping. A bad
// value is a 400 that names the parameter: a typo must never widen a report silently.

export interface UsageQuery {
  user?: string
  model?: string
  key?: string
  backend?: string
  from?: string
  to?: string
  groupBy?: string
  format?: 'json' | 'csv'
  limit?: string
  offset?: string
}

const DAY_MS = 86_400_000
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/
const TIME = /^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/
export const WHEN_HINT = 'a UTC date (2025-06-01, the whole day) or an ISO 8601 time with a zone (2025-06-01T12:00:00Z)'

function bad (name: string, message: string): GatewayError {
  return new GatewayError(400, `invalid query parameter '${name}': ${message}`, 'invalid_request')
}

/** Midnight UTC of a real calendar date, or undefined (Date.UTC would roll 02-30 into March). */
function dateMs (text: string): number | undefined {
  const m = DATE.exec(text)
  if (m === null) return undefined
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
  return new Date(ms).toISOString().slice(0, 10) === text ? ms : undefined
}

/**
 * A bound of the period, in ms. A date covers its whole UTC day: as `from` its first ms, as `to`
 * the ms after its last (both ends are inclusive). A time is taken to the ms, `to` included.
 */
export function parseWhen (name: 'from' | 'to', text: string): number {
  const day = dateMs(text)
  if (day !== undefined) return name === 'from' ? day : day + DAY_MS
  const m = TIME.exec(text)
  const ms = m === null || dateMs(m[1]!) === undefined ? NaN : Date.parse(text)
  if (Number.isNaN(ms)) throw bad(name, `'${text}' is not ${WHEN_HINT}`)
  return name === 'from' ? ms : ms + 1
}

export function parseFilter (query: UsageQuery): UsageFilter {
  const from = query.from === undefined ? undefined : parseWhen('from', query.from)
  const to = query.to === undefined ? undefined : parseWhen('to', query.to)
  if (from !== undefined && to !== undefined && from >= to) throw bad('to', `the period ends (${query.to}) before it starts (${query.from})`)
  return { user: query.user, model: query.model, key: query.key, backend: query.backend, from, to }
}

export function parseGroupBy (text: string | undefined): GroupField[] {
  if (text === undefined) return DEFAULT_GROUP_BY
  const fields = text.split(',').map((f) => f.trim())
  for (const f of fields) {
    if (!(GROUP_FIELDS as string[]).includes(f)) throw bad('groupBy', `${f === '' ? 'an empty field' : `unknown field '${f}'`}; use any of ${GROUP_FIELDS.join(', ')}, separated by commas`)
  }
  if (new Set(fields).size !== fields.length) throw bad('groupBy', 'a field is named twice')
  return fields as GroupField[]
}

export const MAX_LIMIT = 100_000

export function parsePage (query: UsageQuery): { limit: number, offset: number } {
  const limit = query.limit === undefined ? 100 : Number(query.limit)
  if (limit < 1 || limit > MAX_LIMIT) throw bad('limit', `must be 1 to ${MAX_LIMIT}`)
  return { limit, offset: query.offset === undefined ? 0 : Number(query.offset) }
}

/** The filters a caller gave, as they gave them, to echo in a JSON answer. */
export function givenFilters (query: UsageQuery): Partial<Record<'user' | 'model' | 'key' | 'backend' | 'from' | 'to', string>> {
  const out: Partial<Record<'user' | 'model' | 'key' | 'backend' | 'from' | 'to', string>> = {}
  for (const name of ['user', 'model', 'key', 'backend', 'from', 'to'] as const) if (query[name] !== undefined) out[name] = query[name]
  return out
}
