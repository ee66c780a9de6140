import type { Statement } from 'better-sqlite3'
import type { Db } from './database.js'

/** Changes by other processes (the CLI) are seen this soon; this process's own at once. */
export const OTHERS_CHECK_MS = 25

/**
 * Says whether anything was written to the store since it last asked: by this connection
 * (`total_changes()`, which costs next to nothing) or by another process, such as the CLI revoking
 * a key (`data_version`, which needs a read transaction: file locks, a few microseconds under
 * load, so it is asked at most every OTHERS_CHECK_MS). What was read from the store may be reused
 * while nothing changed.
 */
export class StoreGeneration {
  private readonly ownChanges: Statement<[], number>
  private readonly othersCommits: Statement<[], number>
  private own = -1
  private others = -1
  private othersCheckedAt = 0

  constructor (db: Db, private readonly othersCheckMs = OTHERS_CHECK_MS) {
    this.ownChanges = db.prepare<[], number>('SELECT total_changes()').pluck()
    this.othersCommits = db.prepare<[], number>('PRAGMA data_version').pluck()
  }

  /** True when the store changed since the last call. */
  changed (): boolean {
    let changed = false
    const own = this.ownChanges.get()!
    if (own !== this.own) {
      this.own = own
      changed = true
    }
    const now = Date.now()
    if (now - this.othersCheckedAt >= this.othersCheckMs) {
      this.othersCheckedAt = now
      const others = this.othersCommits.get()!
      if (others !== this.others) {
        this.others = others
        changed = true
      }
    }
    return changed
  }
}
