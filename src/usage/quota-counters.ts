import type { Principal } from '../auth/jwt.js'
import type { Config } from '../config/schema.js'
import { utcDay } from './usage-log.js'

// Which counters a request is held against: tokens per day and per month for its user, its API
// key and its role as a whole, and chats running at once for its user. Windows are UTC days and
// calendar months; a counter's key names its window, so a new day starts from zero by itself.

export interface Counter {
  /** Store key, e.g. `t:u:alice:d:2026-11-27` or `c:u:alice` (names URI-encoded: no spaces or bars). */
  key: string
  /** tokens: settled with the real usage; streams: only held while a chat runs. */
  kind: 'tokens' | 'streams'
  limit: number
  /** When the window ends (ms since the epoch); streams counters have none. */
  resetsAt?: number
  /** For messages: "user 'alice' tokens per day (limits.tokensPerDay.user)". */
  label: string
  /** For the usage-table query that a local counter starts from. */
  scope?: { column: 'user' | 'key_id' | 'role', value: string, from: string, to: string }
}

export interface Windows { day: string, month: string, dayEnd: number, monthEnd: number }

/** Days as the usage table names them (a local counter starts from that table). */
export function windowsAt (now: number): Windows {
  const d = new Date(now)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  const day = utcDay(now)
  return {
    day,
    month: day.slice(0, 7),
    dayEnd: Date.UTC(y, m, d.getUTCDate() + 1),
    monthEnd: Date.UTC(y, m + 1, 1),
  }
}

type Subject = { tag: string, column: 'user' | 'key_id' | 'role', value: string, who: string }

/** The counters for one principal at one moment; empty when no limit applies. */
export function countersFor (limits: Config['limits'], principal: Principal, now: number): Counter[] {
  const { role, sub } = principal
  const own = limits.users[sub]
  const counters: Counter[] = []
  let w: Windows | undefined
  const tokens = (subject: Subject, perDay: number | undefined, perMonth: number | undefined, source: { day: string, month: string }): void => {
    w ??= windowsAt(now)
    if (perDay !== undefined && perDay > 0) {
      counters.push({
        key: `t:${subject.tag}:${encodeURIComponent(subject.value)}:d:${w.day}`, kind: 'tokens', limit: perDay, resetsAt: w.dayEnd,
        label: `${subject.who} tokens per day (${source.day})`,
        scope: { column: subject.column, value: subject.value, from: w.day, to: w.day },
      })
    }
    if (perMonth !== undefined && perMonth > 0) {
      counters.push({
        key: `t:${subject.tag}:${encodeURIComponent(subject.value)}:m:${w.month}`, kind: 'tokens', limit: perMonth, resetsAt: w.monthEnd,
        label: `${subject.who} tokens per month (${source.month})`,
        scope: { column: subject.column, value: subject.value, from: `${w.month}-01`, to: `${w.month}-31` },
      })
    }
  }
  const userSource = (field: 'tokensPerDay' | 'tokensPerMonth'): string => own?.[field] !== undefined ? `limits.users.${sub}.${field}` : `limits.${field}.${role}`
  tokens({ tag: 'u', column: 'user', value: sub, who: `user '${sub}'` },
    own?.tokensPerDay ?? limits.tokensPerDay[role], own?.tokensPerMonth ?? limits.tokensPerMonth[role],
    { day: userSource('tokensPerDay'), month: userSource('tokensPerMonth') })
  const key = principal.keyLimits
  if (key !== undefined && principal.keyId !== undefined) {
    tokens({ tag: 'k', column: 'key_id', value: principal.keyId, who: `API key ${principal.keyId}` },
      key.tokensPerDay, key.tokensPerMonth, { day: "the key's tokensPerDay", month: "the key's tokensPerMonth" })
  }
  tokens({ tag: 'r', column: 'role', value: role, who: `role '${role}' (all its users together)` },
    limits.roleTokensPerDay[role], limits.roleTokensPerMonth[role],
    { day: `limits.roleTokensPerDay.${role}`, month: `limits.roleTokensPerMonth.${role}` })
  const streams = own?.concurrentStreams ?? limits.concurrentStreams[role]
  if (streams > 0) {
    counters.push({
      key: `c:u:${encodeURIComponent(sub)}`, kind: 'streams', limit: streams,
      label: `user '${sub}' chats at once (${own?.concurrentStreams !== undefined ? `limits.users.${sub}.concurrentStreams` : `limits.concurrentStreams.${role}`})`,
    })
  }
  return counters
}

/** Whether any token or stream limit is configured at all (else the quota path is skipped). */
export function anyQuota (limits: Config['limits']): boolean {
  const perRole = [limits.tokensPerDay, limits.tokensPerMonth, limits.roleTokensPerDay, limits.roleTokensPerMonth, limits.concurrentStreams]
  return perRole.some((r) => r.user > 0 || r.admin > 0) ||
    Object.values(limits.users).some((u) => (u.tokensPerDay ?? 0) > 0 || (u.tokensPerMonth ?? 0) > 0 || (u.concurrentStreams ?? 0) > 0)
}
