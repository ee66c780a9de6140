// Limits in a real Redis: two ChatGate instances sharing it enforce one requests-per-minute
// limit, one token quota (exact under 100 concurrent streams split between them) and one
// concurrent-chat limit; Redis going away is answered as store.redis.onError says, and logged.
import t, { type Test } from 'tap'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { chat, gate, hundredStreams, until } from './helpers/limits.js'
import { startRedis, type TestRedis } from './helpers/redis.js'
import type { Redis } from 'ioredis'
import { RedisQuotaStore } from '../src/usage/quota-redis.js'
import type { Counter } from '../src/usage/quota-counters.js'

const SECRET = 'shared-secret-of-both-replicas-0123456789'

interface Replicas { a: Gateway, b: Gateway, o: OllamaEmulator, redis: TestRedis, logs: () => string }

async function replicas (t: Test, limits: Record<string, unknown>, onError: 'closed' | 'open' = 'closed'): Promise<Replicas> {
  const redis = await startRedis(t)
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  let logText = ''
  const log = new PassThrough()
  log.on('data', (d: Buffer) => { logText += d.toString() })
  const extra = {
    auth: { jwt: { secret: SECRET } },
    limits,
    routing: { maxWaiting: 200, keepAliveMs: 600_000 },
    store: { redis: { url: redis.url, onError, connectTimeoutMs: 500 } },
    log: { level: 'info' },
  }
  const backends = [{ name: 'o', type: 'ollama' as const, url: o.url, maxConcurrent: 200 }]
  const a = await startGateway(t, backends, extra, { logStream: log })
  const b = await startGateway(t, backends, extra, { logStream: log })
  return { a, b, o, redis, logs: () => logText }
}

t.test('two replicas share one requests-per-minute limit', async (t) => {
  const { a, b } = await replicas(t, { requestsPerMinute: { user: 4 } })
  const alice = a.auth('user', 'alice')
  const seen: Array<[number, string | null]> = []
  for (const gw of [a, b, a, b, a, b]) {
    const res = await fetch(`${gw.url}/v1/models`, { headers: alice })
    seen.push([res.status, res.headers.get('x-ratelimit-remaining')])
  }
  t.same(seen, [[200, '3'], [200, '2'], [200, '1'], [200, '0'], [429, '0'], [429, '0']])
  t.equal((await fetch(`${b.url}/v1/models`, { headers: b.auth('user', 'bob') })).status, 200, "bob's count is his own")
})

t.test('requests arriving together are counted one by one, exactly, on each replica', async (t) => {
  const { a, b } = await replicas(t, { requestsPerMinute: { user: 7 } })
  const alice = a.auth('user', 'alice')
  const answers = await Promise.all([a, a, a, a, b, b, b, b, b].map((gw) => fetch(`${gw.url}/v1/models`, { headers: alice })))
  t.same(answers.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 200, 200, 429, 429])
  t.same(answers.filter((r) => r.status === 200).map((r) => r.headers.get('x-ratelimit-remaining')).sort(), ['0', '1', '2', '3', '4', '5', '6'])
})

t.test('two replicas share one token quota, exact under 100 concurrent streams split between them', async (t) => {
  const { a, b, o, redis } = await replicas(t, { tokensPerDay: { user: 500 } })
  const alice = a.auth('user', 'alice')
  const { refusedWhileHeld, answers } = await hundredStreams([a, b], o, alice)
  t.equal(refusedWhileHeld, 50, '500 tokens hold 50 requests of 1 + 9, wherever they arrive')
  t.equal(answers.filter((x) => x.status === 200).length, 50)
  // Settled with the backend's figures (1 prompt + 4 answer tokens each); no hold is left.
  const day = new Date().toISOString().slice(0, 10)
  const client = redis.client()
  t.equal(await client.get(`chatgate:q:t:u:alice:d:${day}`), '250')
  t.equal(await client.get(`chatgate:q:t:u:alice:d:${day}:s`), '0')
  t.equal(await client.zcard('chatgate:q:holds'), 0)
  const next = await chat(b, alice, { maxTokens: 9 })
  t.equal(next.headers.get('x-ratelimit-remaining-tokens'), '240')
})

t.test('two replicas share one limit of chats at once', async (t) => {
  const { a, b, o } = await replicas(t, { concurrentStreams: { user: 2 } })
  const held = gate()
  o.mode = { gate: held.promise }
  const alice = a.auth('user', 'alice')
  const running = [chat(a, alice, { stream: true }), chat(b, alice, { path: '/api/chat', stream: true })]
  // Both are at the backend (discovery's requests to other paths do not count).
  await o.waitForRequests(2, '/api/chat')
  const third = await chat(b, alice)
  t.equal(third.status, 429)
  t.match(third.json().error.message, /^too many requests at once: user 'alice' chats at once/)
  held.open()
  t.same((await Promise.all(running)).map((x) => x.status), [200, 200])
  o.mode = {}
  t.equal((await chat(a, alice)).status, 200, 'finished chats gave their places back')
})

t.test('Redis unreachable with onError: closed — limited requests are refused in the caller\'s protocol, and logged; enforced again once it is back', async (t) => {
  const { a, redis, logs } = await replicas(t, { requestsPerMinute: { user: 100 }, tokensPerDay: { user: 1000 } })
  const alice = a.auth('user', 'alice')
  t.equal((await chat(a, alice, { maxTokens: 9 })).status, 200)
  await redis.stop()
  const openai = await chat(a, alice, { maxTokens: 9 })
  t.equal(openai.status, 503)
  t.same(openai.json(), { error: { message: 'limits store (Redis) unreachable: request refused', type: 'api_error', param: null, code: 'limits_unavailable' } })
  t.equal(openai.headers.get('retry-after'), '1')
  const ollama = await chat(a, alice, { path: '/api/chat', maxTokens: 9 })
  t.equal(ollama.status, 503)
  t.same(ollama.json(), { error: 'limits store (Redis) unreachable: request refused' })
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'public routes do not need Redis')
  t.match(logs(), /Redis unreachable: limited requests are refused \(store\.redis\.onError: closed\)/)
  t.notMatch(logs(), /unhandled error/)

  await redis.start()
  let status = 0
  while (status !== 200) status = (await chat(a, alice, { maxTokens: 9 })).status
  t.match(logs(), /Redis reachable again: limits enforced/)
  const after = await chat(a, alice, { maxTokens: 9 })
  t.equal(after.headers.get('x-ratelimit-remaining-tokens'), String(1000 - 5 - 10), 'counting again: the restarted Redis kept nothing, the first request after it spent 5')
})

t.test('Redis answering a limits command with an error is refused as onError says and logged as such, not as an outage', async (t) => {
  const { a, redis, logs } = await replicas(t, { tokensPerDay: { user: 1000 } })
  const alice = a.auth('user', 'alice')
  t.equal((await chat(a, alice, { maxTokens: 9 })).status, 200)
  // Something else wrote a string where the holds live: every quota call now fails in Redis.
  const client = redis.client()
  await client.set('chatgate:q:holds', 'not a sorted set')
  const refused = await chat(a, alice, { path: '/api/chat', maxTokens: 9 })
  t.equal(refused.status, 503)
  t.same(refused.json(), { error: 'limits store (Redis) failed: request refused' })
  t.match(logs(), /"message":"WRONGTYPE[^"]*".*"msg":"Redis answered a limits command with an error: limited requests are refused \(store\.redis\.onError: closed\)"/)
  t.notMatch(logs(), /Redis unreachable/)
  await client.del('chatgate:q:holds')
  t.equal((await chat(a, alice, { maxTokens: 9 })).status, 200, 'served again once the key is gone')
  t.notMatch(logs(), /reachable again/, 'Redis was never away')
})

t.test('Redis unreachable with onError: open — requests go through unlimited, and the log says so', async (t) => {
  const { a, redis, logs } = await replicas(t, { requestsPerMinute: { user: 1 }, tokensPerDay: { user: 10 } }, 'open')
  const alice = a.auth('user', 'alice')
  t.equal((await chat(a, alice, { maxTokens: 1 })).status, 200)
  t.equal((await chat(a, alice, { maxTokens: 1 })).status, 429, 'limited while Redis is up')
  await redis.stop()
  for (let i = 0; i < 3; i++) t.equal((await chat(a, alice, { maxTokens: 100 })).status, 200, 'let through while Redis is down')
  t.match(logs(), /Redis unreachable: limits are NOT enforced \(store\.redis\.onError: open\)/)
  t.equal((await fetch(`${a.url}/v1/me/limits`, { headers: alice })).status, 503, 'the quota view cannot be read without Redis')
})

/** A quota store on a fresh Redis, with a plain client for looking at what it wrote. */
async function quotaStore (t: Test, prefix: string, holdMs: number): Promise<{ client: Redis, store: RedisQuotaStore }> {
  const client = (await startRedis(t)).client()
  return { client, store: new RedisQuotaStore(client, prefix, holdMs) }
}

t.test('holds of a replica that died lapse instead of blocking the quota', async (t) => {
  const { client, store } = await quotaStore(t, 'lapse:', 50)
  const counter: Counter = { key: 't:u:zoe:d:x', kind: 'tokens', limit: 10, resetsAt: Date.now() + 60_000, label: 'zoe' }
  t.match(await store.reserve('dead-replica-hold', [counter], 10), { ok: true, remaining: [0] })
  t.match(await store.reserve('second', [counter], 1), { ok: false, index: 0, held: 10 })
  const lapsed = Date.now() + 60
  await until(() => Date.now() > lapsed)
  t.match(await store.reserve('third', [counter], 10), { ok: true, remaining: [0] }, 'the dead hold lapsed')
  await store.settle('third', [counter], 10, 4)
  t.same(await store.read([counter]), [{ used: 4, held: 0 }])
  // A settle after its hold lapsed still counts what was used.
  await store.settle('dead-replica-hold', [counter], 10, 3)
  t.same(await store.read([counter]), [{ used: 7, held: 0 }])
})

t.test('a lapsed hold is given back by the next call to Redis, also on a stream counter whose sum expired with it', async (t) => {
  const { client, store } = await quotaStore(t, 'lapse2:', 50)
  const tokens: Counter = { key: 't:u:zoe:d:x', kind: 'tokens', limit: 100, resetsAt: Date.now() + 60_000, label: 'zoe tokens' }
  const streams: Counter = { key: 'c:u:zoe', kind: 'streams', limit: 2, label: 'zoe chats' }
  t.match(await store.reserve('dead-replica-hold', [tokens, streams], 10), { ok: true, remaining: [90, 1] })
  // The stream counter's sum lives as long as a hold: both are gone before anything asks again.
  let sumLeft = 1
  while (sumLeft === 1) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    sumLeft = await client.exists('lapse2:q:c:u:zoe:s')
  }
  t.match(await store.reserve('next', [tokens, streams], 5), { ok: true, remaining: [95, 1] }, 'far from any limit, the lapsed hold no longer counts')
  t.same(await store.read([tokens, streams]), [{ used: 0, held: 5 }, { used: 0, held: 1 }], 'the expired stream sum did not come back negative')
  t.equal(await client.zcard('lapse2:q:holds'), 1, 'only the live hold is left')
})

t.test('the holds and settles of one call to Redis are checked in their order', async (t) => {
  const { client, store } = await quotaStore(t, 'batch:', 60_000)
  const day: Counter = { key: 't:u:zoe:d:x', kind: 'tokens', limit: 10, resetsAt: Date.now() + 60_000, label: 'zoe tokens' }
  const chats: Counter = { key: 'c:u:zoe', kind: 'streams', limit: 4, label: 'zoe chats' }
  const counters = [day, chats]
  // Asked in one turn of the event loop: one call.
  t.same(await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => store.reserve(id, counters, 3))), [
    { ok: true, remaining: [7, 3] },
    { ok: true, remaining: [4, 2] },
    { ok: true, remaining: [1, 1] },
    { ok: false, index: 0, held: 9 },
    { ok: false, index: 0, held: 9 },
  ], 'three holds of 3 fit in 10 tokens, the next two do not')
  const [, , f, g] = await Promise.all([store.settle('a', counters, 3, 2), store.settle('b', counters, 3, 0), store.reserve('f', counters, 5), store.reserve('g', counters, 3)])
  t.same([f, g], [{ ok: true, remaining: [0, 2] }, { ok: false, index: 0, held: 10 }], 'holds see the settles before them: 2 used, 3 and 5 held')
  t.same(await store.read(counters), [{ used: 2, held: 8 }, { used: 0, held: 2 }])
  t.ok(await client.pttl('batch:q:t:u:zoe:d:x') > 86_400_000, 'used tokens live a day past their window')
  const chatsLeft = await client.pttl('batch:q:c:u:zoe:s')
  t.ok(chatsLeft > 0 && chatsLeft <= 60_000, 'running chats live as long as a hold')
  t.equal(await client.zcard('batch:q:holds'), 2)
})

t.test('a call to Redis with thousands of requests holds exactly the room there is', async (t) => {
  const { client, store } = await quotaStore(t, 'many:', 60_000)
  const day: Counter = { key: 't:u:zoe:d:x', kind: 'tokens', limit: 10_000, resetsAt: Date.now() + 60_000, label: 'zoe tokens' }
  const ids = Array.from({ length: 12_000 }, (_, i) => `r${i}`)
  const held = await Promise.all(ids.map((id) => store.reserve(id, [day], 1)))
  t.equal(held.filter((h) => h.ok).length, 10_000, 'exactly as many holds as the limit has room for')
  await Promise.all(ids.slice(0, 10_000).map((id) => store.settle(id, [day], 1, 1)))
  t.same(await store.read([day]), [{ used: 10_000, held: 0 }])
  t.equal(await client.zcard('many:q:holds'), 0)
})

t.test('a gateway closing while a finished chat still settles its hold in Redis waits for it, and records the chat', async (t) => {
  const redis = await startRedis(t)
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], {
    auth: { jwt: { secret: SECRET } },
    limits: { tokensPerDay: { user: 1000 } },
    store: { redis: { url: redis.url, connectTimeoutMs: 2000 } },
  })
  const alice = gw.auth('user', 'alice')
  t.equal((await chat(gw, alice, { maxTokens: 9 })).status, 200)
  // Writes to Redis now wait (longer than the gateway's command timeout): the next chat is
  // answered (its hold was taken first) but cannot settle until that timeout.
  const held = gate()
  o.mode = { gate: held.promise }
  const answer = chat(gw, alice, { stream: true, maxTokens: 9 })
  await o.waitForRequests(2, '/api/chat')
  await redis.client().call('CLIENT', 'PAUSE', '30000', 'WRITE')
  held.open()
  t.equal((await answer).status, 200)
  await gw.app.close()
  const db = new Database(join(gw.config.store.dir, 'chatgate.db'), { readonly: true })
  t.teardown(() => db.close())
  t.same(db.prepare('SELECT endpoint, prompt_tokens, completion_tokens, status FROM usage ORDER BY id').all(), [
    { endpoint: '/v1/chat/completions', prompt_tokens: 1, completion_tokens: 4, status: 200 },
    { endpoint: '/v1/chat/completions', prompt_tokens: 1, completion_tokens: 4, status: 200 },
  ], 'both chats recorded, the second after its settle gave up')
})
