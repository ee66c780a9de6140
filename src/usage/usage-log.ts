import type { FastifyRequest } from 'fastify'
import { whenSettled } from '../relay/usage.js'
import type { Role } from '../config/schema.js'
import type { Statement } from 'better-sqlite3'
import type { Db } from '../store/database.js'

/** One model request (chat, generate, embeddings), as the usage table keeps it. */
export interface UsageRecord {
  /** When the request arrived, ms since the epoch. */
  ts: number
  user: string
  role: Role
  keyId?: string | undefined
  model: string
  backend?: string | undefined
  /** The route path, e.g. /v1/chat/completions. */
  endpoint: string
  promptTokens: number
  completionTokens: number
  /** The backend reported no usage: the figures are estimates. */
  estimated: boolean
  durationMs: number
  ttftMs?: number | undefined
  status: number
  /** The BioChatter Next chat session (`session_id`), for requests from that surface. */
  session?: string | undefined
}

/** Where UsageLog reports failed writes; a pino logger fits. */
export interface UsageLogger { error: (obj: object, msg: string) => void }

export interface UsageLogOptions {
  /** Write as soon as this many records wait, without waiting for the timer (default 500). */
  batchSize?: number
  /**
   * While writes keep failing, at most this many records wait in memory (default 100 000); older
   * ones are then dropped and the count logged, so a broken disk cannot exhaust memory.
   */
  maxBuffered?: number
  /** Default: one JSON line on stderr. */
  log?: UsageLogger
}

const stderrLogger: UsageLogger = {
  error: (obj, msg) => { process.stderr.write(`${JSON.stringify({ level: 50, time: Date.now(), msg, ...obj })}\n`) },
}

const COLUMNS = '(ts, day, user, role, key_id, model, backend, endpoint, prompt_tokens, completion_tokens, estimated, duration_ms, ttft_ms, status, session)'
const ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
// Rows per INSERT statement: one statement for many rows costs far less than a statement a row.
const ROWS_PER_INSERT = 50

/** The UTC calendar day of a time in ms, as the usage table's `day` column keeps it. */
export function utcDay (ts: number): string {
  return new Date(ts).toISOString().slice(0, 10)
}

/**
 * Usage records, written in batches. `record` runs on the hot path of every chat request, so it
 * only pushes to an array; a timer (unref'd: it never keeps the process alive) writes the batch in
 * one transaction with one prepared statement, rather than add a commit (locks, a WAL append) to
 * every request. A failed write keeps the batch for the next tick and is
 * logged; `close` writes what is left synchronously, so a clean shutdown loses nothing and a crash
 * at most one interval.
 */
export class UsageLog {
  private buffer: UsageRecord[] = []
  private readonly insertOne: Statement
  private readonly insertMany: Statement
  /** The UTC day of the last record, and when it ends: most records fall on the same day. */
  private day = { name: '', start: 0, end: 0 }
  private readonly writeBatch: (batch: UsageRecord[]) => void
  private readonly timer: NodeJS.Timeout
  private readonly batchSize: number
  private readonly maxBuffered: number
  private readonly log: UsageLogger
  /** The last write failed: wait for the timer instead of retrying on every record. */
  private failing = false
  private closed = false

  constructor (readonly db: Db, readonly flushMs: number, options: UsageLogOptions = {}) {
    this.batchSize = options.batchSize ?? 500
    this.maxBuffered = options.maxBuffered ?? 100_000
    this.log = options.log ?? stderrLogger
    this.insertOne = db.prepare(`INSERT INTO usage ${COLUMNS} VALUES ${ROW}`)
    this.insertMany = db.prepare(`INSERT INTO usage ${COLUMNS} VALUES ${Array(ROWS_PER_INSERT).fill(ROW).join(', ')}`)
    this.writeBatch = db.transaction((batch: UsageRecord[]) => {
      let at = 0
      for (; at + ROWS_PER_INSERT <= batch.length; at += ROWS_PER_INSERT) {
        this.insertMany.run(batch.slice(at, at + ROWS_PER_INSERT).flatMap((r) => this.values(r)))
      }
      for (; at < batch.length; at++) this.insertOne.run(this.values(batch[at]!))
    })
    this.timer = setInterval(() => this.flush(), flushMs)
    this.timer.unref()
  }

  private values (r: UsageRecord): unknown[] {
    if (r.ts < this.day.start || r.ts >= this.day.end) {
      const start = r.ts - (r.ts % 86_400_000)
      this.day = { name: utcDay(r.ts), start, end: start + 86_400_000 }
    }
    return [r.ts, this.day.name, r.user, r.role, r.keyId ?? null, r.model, r.backend ?? null, r.endpoint,
      r.promptTokens, r.completionTokens, r.estimated ? 1 : 0, r.durationMs, r.ttftMs ?? null, r.status, r.session ?? null]
  }

  /** Records waiting to be written. */
  get pending (): number {
    return this.buffer.length
  }

  record (record: UsageRecord): void {
    this.buffer.push(record)
    // After close (a connection that ended late) nothing is waiting for a timer: write at once.
    if (this.closed || (this.buffer.length >= this.batchSize && !this.failing)) this.flush()
  }

  /** Writes every waiting record now, in one transaction; on failure keeps them and logs. */
  flush (): void {
    if (this.buffer.length === 0) return
    const batch = this.buffer
    this.buffer = []
    try {
      if (!this.db.open) throw new Error('the database is closed')
      this.writeBatch(batch)
      if (this.failing) this.log.error({ written: batch.length }, 'usage records written again')
      this.failing = false
    } catch (err) {
      // Kept in arrival order ahead of what came in meanwhile, for the next attempt.
      this.buffer = batch.concat(this.buffer)
      this.failing = true
      const dropped = Math.max(0, this.buffer.length - this.maxBuffered)
      if (dropped > 0) this.buffer.splice(0, dropped)
      this.log.error({ err: errorInfo(err), waiting: this.buffer.length, ...(dropped > 0 && { dropped }) },
        dropped > 0 ? 'usage records could not be written; the oldest were dropped' : 'usage records could not be written; retrying')
    }
  }

  /** Stops the timer and writes what is left (synchronously: the store closes right after). */
  close (): void {
    clearInterval(this.timer)
    this.closed = true
    this.flush()
  }
}

function errorInfo (err: unknown): object {
  return err instanceof Error ? { type: err.name, message: err.message, ...('code' in err && { code: err.code }) } : { message: String(err) }
}

/** Records every request that named a model (chat, generate, embeddings), however it ended. */
export function recordUsage (usage: UsageLog): (request: FastifyRequest, status: number, durationMs: number) => void {
  return (request, status, durationMs) => {
    const chat = request.chat
    const principal = request.principal
    if (chat === undefined || principal === null) return
    // A stream the client left is still settling its figures: record them once they are final.
    whenSettled(chat, () => usage.record({
      ts: Date.now() - durationMs,
      user: principal.sub,
      role: principal.role,
      keyId: principal.keyId,
      model: chat.model,
      backend: chat.backend,
      endpoint: request.routeOptions.url ?? request.url,
      promptTokens: chat.usage?.promptTokens ?? 0,
      completionTokens: chat.usage?.completionTokens ?? 0,
      estimated: chat.estimated === true,
      durationMs,
      ttftMs: chat.ttftMs,
      // A stream that broke after its 200 counts as the failure it was.
      status: chat.streamFailed === true ? 502 : status,
      session: chat.session,
    }))
  }
}
