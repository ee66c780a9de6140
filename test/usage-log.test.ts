// The usage log on its own: records wait in memory and go to SQLite in batches (by timer, by size,
// on flush and close); a failed write keeps them, says so, and succeeds later; days are UTC.
// And the totals helpers that quotas and a token-usage page read.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase, type Db } from '../src/store/database.js'
import { dayTotals, totals } from '../src/usage/report.js'
import { UsageLog, utcDay, type UsageLogOptions, type UsageRecord } from '../src/usage/usage-log.js'

function store (t: Test): Db {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-usage-log-'))
  const db = openDatabase(dir)
  t.teardown(() => {
    if (db.open) db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return db
}

function errors (): { log: NonNullable<UsageLogOptions['log']>, lines: Array<{ obj: any, msg: string }> } {
  const lines: Array<{ obj: any, msg: string }> = []
  return { lines, log: { error: (obj, msg) => { lines.push({ obj, msg }) } } }
}

let n = 0
const rec = (extra: Partial<UsageRecord> = {}): UsageRecord => ({
  ts: Date.now(), user: 'alice', role: 'user', model: 'llama3.2', backend: 'gpu1', endpoint: '/api/chat',
  promptTokens: 3, completionTokens: 4, estimated: false, durationMs: 20, ttftMs: 5, status: 200, ...extra, ...(extra.user === undefined && { user: `u${n++}` }),
})
const count = (db: Db): number => db.prepare('SELECT COUNT(*) FROM usage').pluck().get() as number

t.test('records wait in memory and are written in one transaction on flush, as the table keeps them', async (t) => {
  const db = store(t)
  const usage = new UsageLog(db, 600_000)
  t.teardown(() => usage.close())
  // 23:30 on New Year's Eve in New York is already January 1st in UTC.
  const ts = Date.parse('2024-12-31T23:30:00-05:00')
  usage.record(rec({ ts, user: 'alice', keyId: 'k1', estimated: true, ttftMs: undefined, backend: undefined, status: 499 }))
  usage.record(rec({ user: 'bob' }))
  t.equal(count(db), 0, 'nothing written yet')
  t.equal(usage.pending, 2)
  usage.flush()
  t.equal(usage.pending, 0)
  t.same(db.prepare('SELECT ts, day, user, role, key_id, model, backend, endpoint, prompt_tokens, completion_tokens, estimated, duration_ms, ttft_ms, status FROM usage ORDER BY id').all()[0], {
    ts, day: '2025-01-01', user: 'alice', role: 'user', key_id: 'k1', model: 'llama3.2', backend: null, endpoint: '/api/chat',
    prompt_tokens: 3, completion_tokens: 4, estimated: 1, duration_ms: 20, ttft_ms: null, status: 499,
  })
  t.equal(count(db), 2)
  usage.flush()
  t.equal(count(db), 2, 'an empty flush writes nothing')
  t.equal(utcDay(Date.parse('2025-06-01T00:30:00+02:00')), '2025-05-31')
})

t.test('a full batch is written at once, the rest by the timer; close writes what is left', async (t) => {
  const db = store(t)
  const usage = new UsageLog(db, 30, { batchSize: 3 })
  usage.record(rec())
  usage.record(rec())
  t.equal(count(db), 0)
  usage.record(rec())
  t.equal(count(db), 3, 'the third record filled the batch')
  usage.record(rec())
  for (let i = 0; i < 100 && count(db) < 4; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(count(db), 4, 'the timer wrote the partial batch')
  usage.record(rec())
  usage.close()
  t.equal(count(db), 5, 'close wrote synchronously')
  usage.record(rec())
  t.equal(count(db), 6, 'after close a late record is written at once')
})

t.test('a failed write keeps the records, logs, does not retry per record, and succeeds later', async (t) => {
  const db = store(t)
  const { log, lines } = errors()
  const usage = new UsageLog(db, 600_000, { batchSize: 2, log })
  t.teardown(() => usage.close())
  db.pragma('query_only = ON') // every write fails as on a full or read-only disk
  usage.record(rec({ user: 'first' }))
  usage.record(rec({ user: 'second' }))
  t.equal(count(db), 0)
  t.equal(lines.length, 1, 'the failure is logged')
  t.match(lines[0], { msg: 'usage records could not be written; retrying', obj: { waiting: 2, err: { message: /readonly/ } } })
  for (let i = 0; i < 5; i++) usage.record(rec({ user: `more${i}` }))
  t.equal(lines.length, 1, 'while failing, a full batch waits for the timer instead of retrying each time')
  t.equal(usage.pending, 7)
  usage.flush()
  t.equal(lines.length, 2, 'the next tick tries again')
  db.pragma('query_only = OFF')
  usage.flush()
  t.equal(usage.pending, 0)
  t.same(db.prepare('SELECT user FROM usage ORDER BY id').pluck().all(), ['first', 'second', 'more0', 'more1', 'more2', 'more3', 'more4'], 'all of them, in order')
  t.match(lines[2], { msg: 'usage records written again', obj: { written: 7 } })
  usage.record(rec())
  usage.record(rec())
  t.equal(count(db), 9, 'healthy again: a full batch is written at once')
})

t.test('while writes fail, the oldest records beyond maxBuffered are dropped and counted', async (t) => {
  const db = store(t)
  const { log, lines } = errors()
  const usage = new UsageLog(db, 600_000, { maxBuffered: 2, log })
  t.teardown(() => usage.close())
  db.pragma('query_only = ON')
  for (const user of ['a', 'b', 'c']) usage.record(rec({ user }))
  usage.flush()
  t.match(lines.at(-1), { msg: 'usage records could not be written; the oldest were dropped', obj: { waiting: 2, dropped: 1 } })
  db.pragma('query_only = OFF')
  usage.flush()
  t.same(db.prepare('SELECT user FROM usage ORDER BY id').pluck().all(), ['b', 'c'])
})

t.test('a closed database: the failure goes to stderr by default, the process goes on', async (t) => {
  const db = store(t)
  const usage = new UsageLog(db, 600_000)
  const written: string[] = []
  const write = process.stderr.write
  process.stderr.write = ((chunk: string) => { written.push(chunk); return true }) as typeof process.stderr.write
  try {
    db.close()
    usage.record(rec())
    usage.close()
  } finally {
    process.stderr.write = write
  }
  t.equal(written.length, 1)
  t.match(JSON.parse(written[0]!), { level: 50, msg: 'usage records could not be written; retrying', waiting: 1, err: { message: 'the database is closed' } })
})

t.test('totals and dayTotals: one user\'s day, for one model or all', async (t) => {
  const db = store(t)
  const usage = new UsageLog(db, 600_000)
  t.teardown(() => usage.close())
  const now = Date.parse('2025-06-01T15:00:00Z')
  usage.record(rec({ ts: Date.parse('2025-06-01T00:00:00Z'), user: 'ann', model: 'a', promptTokens: 1, completionTokens: 2, durationMs: 10, ttftMs: 4 }))
  usage.record(rec({ ts: Date.parse('2025-06-01T23:59:59.999Z'), user: 'ann', model: 'a', promptTokens: 10, completionTokens: 20, durationMs: 31, ttftMs: undefined, status: 500 }))
  usage.record(rec({ ts: Date.parse('2025-06-01T12:00:00Z'), user: 'ann', model: 'b', promptTokens: 100, completionTokens: 0, estimated: true }))
  usage.record(rec({ ts: Date.parse('2025-05-31T23:59:59.999Z'), user: 'ann', model: 'a', promptTokens: 1000, completionTokens: 0 }))
  usage.record(rec({ ts: Date.parse('2025-06-01T12:00:00Z'), user: 'ben', model: 'a', promptTokens: 10_000, completionTokens: 0 }))
  usage.flush()
  t.same(dayTotals(db, 'ann', 'a', now), { requests: 2, errors: 1, estimated: 0, promptTokens: 11, completionTokens: 22, totalTokens: 33, avgDurationMs: 21, avgTtftMs: 4 })
  t.match(dayTotals(db, 'ann', undefined, now), { requests: 3, totalTokens: 133, estimated: 1 })
  t.match(dayTotals(db, 'ann', 'a', Date.parse('2025-05-31T08:00:00Z')), { requests: 1, totalTokens: 1000 })
  t.match(dayTotals(db, 'ann'), { requests: 0, totalTokens: 0, avgDurationMs: null }, 'today (the real one) has none')
  t.match(totals(db), { requests: 5, totalTokens: 11_133 })
})
