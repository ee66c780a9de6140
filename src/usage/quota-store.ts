import type { Counter } from './quota-counters.js'

/** Where counters live: this process (quota-local.ts) or Redis, shared by replicas (quota-redis.ts). */
export interface QuotaStore {
  /**
   * Holds `amounts[i]` on every counter at once, or on none: all-or-nothing, atomic against
   * every other reservation. On refusal, which counter and what it already holds.
   */
  reserve: (id: string, counters: Counter[], amounts: number[]) => Promise<Reserved | Refused>
  /** Drops the hold `id` and adds `used[i]` (0 for streams and for a release). */
  settle: (id: string, counters: Counter[], amounts: number[], used: number[]) => Promise<void>
  /** What each counter has used and holds now, for a caller's own view. */
  read: (counters: Counter[]) => Promise<Array<{ used: number, held: number }>>
  close: () => Promise<void>
}

/** Room left on each counter after the hold. */
export interface Reserved { ok: true, remaining: number[] }
export interface Refused { ok: false, index: number, held: number }
