import type { Statement } from 'better-sqlite3'
import type { Db } from '../store/database.js'
import type { Counter } from './quota-counters.js'
import { amountOn, type QuotaStore, type Refused, type Reserved } from './quota-store.js'

// Counters in this process. Check-and-hold runs without an await in between, so concurrent
// requests cannot both take the last tokens. A token counter starts from what the usage table
// already holds for its window, so a restart does not hand out a day's quota twice.

interface Slot { used: number, held: number, resetsAt: number | undefined }

const SWEEP_MS = 60_000

export class LocalQuotaStore implements QuotaStore {
  private readonly slots = new Map<string, Slot>()
  private readonly sums = new Map<string, Statement<[string, string, string], number>>()
  private readonly sweeper: NodeJS.Timeout

  /** `beforeCount` writes out usage records still buffered, so the table is complete. */
  constructor (private readonly db: Db, private readonly beforeCount: () => void) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_MS)
    this.sweeper.unref()
  }

  private slot (counter: Counter): Slot {
    let slot = this.slots.get(counter.key)
    if (slot === undefined) {
      slot = { used: counter.kind === 'tokens' ? this.recorded(counter) : 0, held: 0, resetsAt: counter.resetsAt }
      this.slots.set(counter.key, slot)
    }
    return slot
  }

  private recorded (counter: Counter): number {
    const scope = counter.scope
    if (scope === undefined) return 0
    this.beforeCount()
    let statement = this.sums.get(scope.column)
    if (statement === undefined) {
      // The column name comes from a fixed set (Counter.scope), never from a request.
      statement = this.db.prepare<[string, string, string], number>(`SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage WHERE ${scope.column} = ? AND day BETWEEN ? AND ?`).pluck()
      this.sums.set(scope.column, statement)
    }
    return statement.get(scope.value, scope.from, scope.to)!
  }

  reserve (_id: string, counters: Counter[], tokens: number): Reserved | Refused {
    const slots = counters.map((c) => this.slot(c))
    for (let i = 0; i < slots.length; i++) {
      const held = slots[i]!.used + slots[i]!.held
      if (held + amountOn(counters[i]!, tokens) > counters[i]!.limit) return { ok: false, index: i, held }
    }
    const remaining = slots.map((slot, i) => {
      slot.held += amountOn(counters[i]!, tokens)
      return counters[i]!.limit - slot.used - slot.held
    })
    return { ok: true, remaining }
  }

  settle (_id: string, counters: Counter[], tokens: number, spent: number): void {
    for (const counter of counters) {
      // Never swept while it holds something.
      const slot = this.slots.get(counter.key)!
      slot.held -= amountOn(counter, tokens)
      if (counter.kind === 'tokens') slot.used += spent
    }
  }

  async read (counters: Counter[]): Promise<Array<{ used: number, held: number }>> {
    return counters.map((c) => {
      const slot = this.slot(c)
      return { used: slot.used, held: slot.held }
    })
  }

  /** Forgets counters whose window is over (their key will never be asked for again). */
  private sweep (now: number): void {
    for (const [key, slot] of this.slots) {
      if (slot.resetsAt !== undefined && slot.resetsAt <= now && slot.held === 0) this.slots.delete(key)
    }
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
  }
}
