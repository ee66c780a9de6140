import type { Db } from '../store/database.js'
import { utcDay } from '../usage/usage-log.js'

// Requests per minute over the last minutes, from the usage table: what the dashboard's charts
// draw. One query grouped by minute; the minutes without requests are filled in here.

export const MINUTE_MS = 60_000
export const MAX_ACTIVITY_MINUTES = 1440

export interface ActivityBucket {
  /** The minute's start, ISO 8601 UTC. */
  at: string
  requests: number
  /** Requests that ended with a status of 400 or more. */
  errors: number
  /** Mean time to first token of the minute's requests that had one; null when none had. */
  ttftMsAvg: number | null
  /** Prompt and completion tokens. */
  tokens: number
}

interface Row { minute: number, requests: number, errors: number, ttft: number | null, tokens: number }

/**
 * `minutes` buckets, oldest first; the last one is the current (unfinished) minute. Requests count
 * in the minute they arrived. Reads what is written: flush the UsageLog first.
 */
export function activity (db: Db, minutes: number, now = Date.now()): ActivityBucket[] {
  const last = Math.floor(now / MINUTE_MS)
  const first = last - minutes + 1
  const from = first * MINUTE_MS
  // `day` repeats the time bound so that SQLite can use the index on day.
  const rows = db.prepare(`SELECT CAST(ts / ${MINUTE_MS} AS INTEGER) AS minute, COUNT(*) AS requests, COALESCE(SUM(status >= 400), 0) AS errors,
      ROUND(AVG(ttft_ms)) AS ttft, COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens
    FROM usage WHERE day >= ? AND ts >= ? AND ts < ? GROUP BY minute`)
    .all(utcDay(from), from, (last + 1) * MINUTE_MS) as Row[]
  const byMinute = new Map(rows.map((r) => [r.minute, r]))
  const buckets: ActivityBucket[] = []
  for (let minute = first; minute <= last; minute++) {
    const row = byMinute.get(minute)
    buckets.push({
      at: new Date(minute * MINUTE_MS).toISOString(),
      requests: row?.requests ?? 0,
      errors: row?.errors ?? 0,
      ttftMsAvg: row?.ttft ?? null,
      tokens: row?.tokens ?? 0,
    })
  }
  return buckets
}
