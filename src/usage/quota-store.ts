import type { Counter } from './quota-counters.js'

/** Where counters live: this process (quota-local.ts) or Redis, shared by replicas (quota-redis.ts). */
export interface QuotaStore {
  /**
   * Holds `tokens` on every token counter and one running chat on every stream counter, on all
   * of them or none, atomic against every other hold. On refusal, which counter and what it
   * already holds. The local store answers at once, without a promise: this is every request.
   */
  reserve: (id: string, counters: Counter[], tokens: number) => Reserved | Refused | Promise<Reserved | Refused>
  /** Drops the hold `id` and adds `spent` to its token counters (0: a release). */
  settle: (id: string, counters: Counter[], tokens: number, spent: number) => void | Promise<void>
  /** What each counter has used and holds now, for a caller's own view. */
  read: (counters: Counter[]) => Promise<Array<{ used: number, held: number }>>
  close: () => Promise<void>
}

/** What a counter holds for a request: its tokens, or one running chat. */
export const amountOn = (counter: Counter, tokens: number): number => counter.kind === 'tokens' ? tokens : 1

/** Room left on each counter after the hold. */
export interface Reserved { ok: true, remaining: number[] }
export interface Refused { ok: false, index: number, held: number }
