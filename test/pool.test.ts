// The backend pool (DESIGN.md "The chat path": pool.acquire): which backend a chat goes to, the
// bounded FIFO queue when every slot is busy, retries before the first byte, passive and active
// health, and concurrency never above a backend's maxConcurrent.
import { EventEmitter } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { Agent, fetch as undiciFetch } from 'undici'
import type { Pool } from '../src/backends/pool.js'
import { OLLAMA_BUSY, OllamaEmulator, type OllamaEmulatorOptions } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway, type TestBackend } from './helpers/gateway.js'

type Surface = 'ollama' | 'openai'
type Emulator = OllamaEmulator | XinferenceEmulator
interface Env { gw: Gateway, pool: Pool, fetch: typeof fetch }

const LLAMA = 'llama3.2'
const QWEN = 'qwen2.5-instruct'
const LOADED = { loaded: ['llama3.2:latest'] }

async function started<E extends Emulator> (t: Test, e: E): Promise<E> {
  t.teardown(() => e.close())
  return e
}
const ollama = async (t: Test, opts: OllamaEmulatorOptions = {}): Promise<OllamaEmulator> => started(t, await OllamaEmulator.start(opts))
const xinference = async (t: Test): Promise<XinferenceEmulator> => started(t, await XinferenceEmulator.start())

const backend = (name: string, e: Emulator | Forwarder, maxConcurrent = 1): TestBackend =>
  ({ name, type: e instanceof XinferenceEmulator ? 'xinference' : 'ollama', url: e.url, maxConcurrent })

/** A gateway plus a client connection pool that is destroyed before the gateway closes. */
async function gateway (t: Test, backends: TestBackend[], routing: Record<string, unknown> = {}): Promise<Env> {
  const gw = await startGateway(t, backends, { routing })
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  const clientFetch = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch
  return { gw, pool: gw.app.gateway.pool, fetch: clientFetch }
}

const chatPath = (e: Emulator): string => (e instanceof OllamaEmulator ? '/api/chat' : '/v1/chat/completions')
/** The user message of every chat the emulator received, in arrival order. */
const chats = (e: Emulator): string[] => e.requests.filter((r) => r.path === chatPath(e)).map((r) => String(r.body?.messages?.[0]?.content))

interface SendOptions { stream?: boolean, content?: string, signal?: AbortSignal }
function send ({ gw, fetch }: Env, surface: Surface, model: string, o: SendOptions = {}): Promise<Response> {
  return fetch(surface === 'ollama' ? `${gw.url}/api/chat` : `${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: o.content ?? 'hi' }], stream: o.stream ?? false }),
    ...(o.signal !== undefined && { signal: o.signal }),
  })
}

interface Held { abort: () => void, done: Promise<unknown> }
/** Starts a streamed chat that stays open while the emulator holds it, until `abort()`. */
function hold (env: Env, content: string): Held {
  const ac = new AbortController()
  const done = send(env, 'ollama', LLAMA, { content, stream: true, signal: ac.signal }).then((r) => r.text()).catch(() => undefined)
  return { abort: () => ac.abort(), done }
}

/** Holds chats, aborted at teardown (before the gateway closes). */
function holder (t: Test, env: Env): (content: string) => () => Promise<unknown> {
  const held: Held[] = []
  t.teardown(() => held.forEach((h) => h.abort()))
  return (content) => () => { const h = hold(env, content); held.push(h); return h.done }
}

/** Runs `start`, answers which emulator got the next chat, and waits for the answer unless that emulator holds it. */
async function landing (a: Emulator, b: Emulator, start: () => Promise<unknown>): Promise<'a' | 'b'> {
  const [na, nb] = [chats(a).length, chats(b).length]
  const done = start()
  await Promise.race([a.waitForRequests(na + 1, chatPath(a)), b.waitForRequests(nb + 1, chatPath(b))])
  const where = chats(a).length > na ? 'a' : 'b'
  if ((where === 'a' ? a : b).mode.holdOpen !== true) await done
  return where
}

/** Resolves once `ready()` holds, re-checked whenever the pool's wait queue changes (its private array, watched). */
function queueWatch (pool: Pool): (ready: () => boolean) => Promise<void> {
  const waiters: unknown = Reflect.get(pool, 'waiters')
  if (!Array.isArray(waiters)) throw new Error('Pool keeps no waiters array to watch')
  const changes = new EventEmitter()
  for (const method of ['push', 'splice'] as const) {
    const original = waiters[method] as (...args: unknown[]) => unknown
    Object.defineProperty(waiters, method, {
      configurable: true,
      value (this: unknown[], ...args: unknown[]) { const r = original.apply(this, args); changes.emit('change'); return r },
    })
  }
  return (ready) => new Promise<void>((resolve) => {
    const check = (): void => { if (ready()) { changes.off('change', check); resolve() } }
    changes.on('change', check).emit('change')
  })
}

/** A TCP forwarder in front of an emulator, so its port can stop and start listening. */
class Forwarder {
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private port = 0
  constructor (private readonly target: URL) {}
  get url (): string { return `http://127.0.0.1:${this.port}` }

  async open (): Promise<void> {
    const server = this.server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port), this.target.hostname)
      for (const [s, other] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(s)
        s.on('close', () => { this.sockets.delete(s); other.destroy() }).on('error', () => s.destroy())
      }
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve))
    this.port = (server.address() as AddressInfo).port
  }

  async close (): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())))
  }
}

const positiveInteger = /^[1-9][0-9]*$/
const busyBody = (surface: Surface): object => surface === 'ollama'
  ? { error: /busy/ }
  : { error: { message: /busy/, type: 'api_error', param: null, code: 'server_busy' } }

t.test('routes only to backends serving the model; 404 in the caller\'s protocol otherwise', async (t) => {
  const a = await ollama(t)
  const b = await ollama(t, { models: ['mistral:latest'] })
  const env = await gateway(t, [backend('a', a, 4), backend('b', b, 4)])
  for (let i = 0; i < 3; i++) {
    t.equal((await send(env, 'ollama', 'mistral', { content: `m${i}` })).status, 200)
    t.equal((await send(env, 'openai', LLAMA, { content: `l${i}` })).status, 200)
  }
  t.same(chats(a), ['l0', 'l1', 'l2'])
  t.same(chats(b), ['m0', 'm1', 'm2'])

  const openaiRes = await send(env, 'openai', 'nope')
  t.equal(openaiRes.status, 404)
  t.same(await openaiRes.json(), { error: { message: "model 'nope' not found", type: 'not_found_error', param: null, code: 'model_not_found' } })
  const ollamaRes = await send(env, 'ollama', 'nope', { stream: true })
  t.equal(ollamaRes.status, 404)
  t.same(await ollamaRes.json(), { error: "model 'nope' not found" })
  const openai = new OpenAI({ baseURL: `${env.gw.url}/v1`, apiKey: env.gw.token(), maxRetries: 0, fetch: env.fetch })
  const notFound = await openai.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
  t.type(notFound, OpenAI.NotFoundError)
  t.match(notFound, { status: 404, message: "404 model 'nope' not found" })
  const client = new Ollama({ host: env.gw.url, headers: env.gw.auth(), fetch: env.fetch })
  t.match(await client.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e), { status_code: 404, error: "model 'nope' not found" })
  t.equal(chats(a).length + chats(b).length, 6, 'no backend was asked for the unknown model')
})

t.test('a model that appears later is found by the re-discovery an unknown model triggers', async (t) => {
  const a = await ollama(t)
  const env = await gateway(t, [backend('a', a)])
  const tags = (): number => a.requests.filter((r) => r.path === '/api/tags').length
  const before = tags()
  a.models.push('phi3:latest')
  const res = await send(env, 'ollama', 'phi3', { content: 'new' })
  t.equal(res.status, 200)
  t.equal(((await res.json()) as any).message.content, 'Hello from phi3:latest!')
  t.equal(tags(), before + 1, 'one re-discovery')
  t.equal(a.requests.at(-1)?.body.model, 'phi3:latest')
})

t.test('least outstanding requests, within maxConcurrent', async (t) => {
  const a = await ollama(t, LOADED)
  const b = await ollama(t, LOADED)
  const env = await gateway(t, [backend('a', a, 3), backend('b', b, 3)])
  const [A, B] = env.pool.backends as [Pool['backends'][0], Pool['backends'][0]]
  const go = holder(t, env)
  a.mode = { holdOpen: true } // A keeps what it gets, B answers at once
  let where: 'a' | 'b' = 'b'
  for (let i = 0; i < 3 && where === 'b'; i++) where = await landing(a, b, go(`w${i}`))
  t.equal(where, 'a', 'a request sits on A')
  t.equal(A.inFlight, 1)
  for (let i = 0; i < 4; i++) {
    if (!t.equal(await landing(a, b, go(`b${i}`)), 'b', `request ${i} goes to the idle backend`)) return
  }

  b.mode = { holdOpen: true }
  for (let i = 0; i < 5; i++) {
    await landing(a, b, go(`fill${i}`))
    t.ok(Math.abs(A.inFlight - B.inFlight) <= 1, `balanced after ${i + 1}: ${A.inFlight}/${B.inFlight}`)
  }
  t.same([A.inFlight, B.inFlight, a.inFlight, b.inFlight], [3, 3, 3, 3])
  const queued = queueWatch(env.pool)
  const sent = chats(a).length + chats(b).length
  void go('waits')()
  await queued(() => env.pool.queueLength(LLAMA) === 1)
  t.equal(chats(a).length + chats(b).length, sent, 'the seventh waits instead of going upstream')
  t.same([a.maxInFlight, b.maxInFlight], [3, 3])
})

t.test('the backend with the model loaded is preferred while it has a free slot', async (t) => {
  const a = await ollama(t)
  const b = await ollama(t, LOADED)
  const env = await gateway(t, [backend('a', a, 2), backend('b', b, 2)])
  for (let i = 0; i < 3; i++) t.equal((await send(env, 'ollama', LLAMA, { content: `seq${i}` })).status, 200)
  t.same(chats(a), [])
  t.same(chats(b), ['seq0', 'seq1', 'seq2'])
  a.mode = { holdOpen: true }
  b.mode = { holdOpen: true }
  const go = holder(t, env)
  t.equal(await landing(a, b, go('h0')), 'b')
  t.equal(await landing(a, b, go('h1')), 'b', 'B again although A is idle')
  t.equal(await landing(a, b, go('h2')), 'a', 'B is full')
})

t.test('with every slot busy, requests wait FIFO and proceed as slots free', async (t) => {
  const o = await ollama(t)
  const env = await gateway(t, [backend('o', o, 1)], { queueTimeoutMs: 30_000 })
  const queued = queueWatch(env.pool)
  o.mode = { holdOpen: true }
  const first = hold(env, 'r0')
  await o.waitForRequests(1, '/api/chat')
  const waiting: Array<Promise<Response>> = []
  for (let i = 1; i <= 3; i++) {
    waiting.push(send(env, i === 2 ? 'openai' : 'ollama', LLAMA, { content: `r${i}` }))
    await queued(() => env.pool.queueLength(LLAMA) === i)
  }
  t.same(chats(o), ['r0'])
  o.mode = {} // the held request keeps its own mode
  first.abort()
  t.same((await Promise.all(waiting)).map((r) => r.status), [200, 200, 200])
  t.same(chats(o), ['r0', 'r1', 'r2', 'r3'], 'served in arrival order')
  t.equal(o.maxInFlight, 1)
  t.equal(env.pool.queueLength(LLAMA), 0)
})

t.test('past routing.maxWaiting (at once) or routing.queueTimeoutMs: 503 with Retry-After in the caller\'s protocol', async (t) => {
  for (const routing of [{ maxWaiting: 1, queueTimeoutMs: 20_000 }, { maxWaiting: 64, queueTimeoutMs: 100 }]) {
    const full = routing.maxWaiting === 1
    const o = await ollama(t)
    const env = await gateway(t, [backend('o', o, 1)], routing)
    const queued = queueWatch(env.pool)
    o.mode = { holdOpen: true }
    const first = hold(env, 'r0')
    await o.waitForRequests(1, '/api/chat')
    const waiting = full ? send(env, 'ollama', LLAMA, { content: 'r1' }) : undefined
    await queued(() => env.pool.queueLength(LLAMA) === (full ? 1 : 0))
    for (const surface of ['ollama', 'openai'] as const) {
      const startedAt = Date.now()
      const res = await send(env, surface, LLAMA, { content: 'one too many' })
      if (full) t.ok(Date.now() - startedAt < 10_000, `${surface}: answered without waiting for queueTimeoutMs`)
      t.equal(res.status, 503)
      t.match(res.headers.get('retry-after'), positiveInteger)
      t.match(await res.json(), busyBody(surface))
      t.equal(env.pool.queueLength(LLAMA), full ? 1 : 0, full ? 'the queue is unchanged' : 'it left the queue')
    }
    o.mode = {}
    first.abort()
    if (waiting !== undefined) t.equal((await waiting).status, 200)
    t.same(chats(o), full ? ['r0', 'r1'] : ['r0'])
  }
})

t.test('a queued client that disconnects leaves the queue', async (t) => {
  const o = await ollama(t)
  const env = await gateway(t, [backend('o', o, 1)], { maxWaiting: 2, queueTimeoutMs: 30_000 })
  const queued = queueWatch(env.pool)
  o.mode = { holdOpen: true }
  const first = hold(env, 'r0')
  await o.waitForRequests(1, '/api/chat')
  const leaver = new AbortController()
  send(env, 'ollama', LLAMA, { content: 'gone', signal: leaver.signal }).catch(() => undefined)
  await queued(() => env.pool.queueLength(LLAMA) === 1)
  const r2 = send(env, 'openai', LLAMA, { content: 'r2' })
  await queued(() => env.pool.queueLength(LLAMA) === 2)
  leaver.abort()
  await queued(() => env.pool.queueLength(LLAMA) === 1)
  const r3 = send(env, 'ollama', LLAMA, { content: 'r3' })
  await queued(() => env.pool.queueLength(LLAMA) === 2) // its place is free again (maxWaiting 2)
  o.mode = {}
  first.abort()
  t.same([(await r2).status, (await r3).status], [200, 200])
  t.same(chats(o), ['r0', 'r2', 'r3'], 'the one that left never reached the backend')
})

t.test('a connect error moves the request to another backend and marks the first down until probed', async (t) => {
  const a = await ollama(t, LOADED) // preferred: it has the model loaded
  const b = await ollama(t)
  const fwd = new Forwarder(new URL(a.url))
  await fwd.open()
  t.teardown(() => fwd.close())
  const env = await gateway(t, [backend('a', fwd), backend('b', b)], { downBackoffMs: 60_000 })
  const [A] = env.pool.backends as [Pool['backends'][0]]
  t.ok(A.isUp())
  await fwd.close() // A's port: nobody listens any more

  const res = await send(env, 'ollama', LLAMA, { content: 'c1', stream: true })
  t.equal(res.status, 200)
  t.equal(JSON.parse((await res.text()).trim().split('\n').at(-1)!).done, true)
  t.same([chats(a), chats(b)], [[], ['c1']])
  t.notOk(A.isUp(), 'A is down')
  t.equal(A.failures, 1)

  t.equal((await send(env, 'openai', LLAMA, { content: 'c2' })).status, 200)
  t.same(chats(b), ['c1', 'c2'])
  t.equal(A.failures, 1, 'A was skipped while its backoff lasts')

  await fwd.open()
  t.notOk(A.isUp(), 'still down until the next probe')
  await env.pool.refresh()
  t.ok(A.isUp(), 'the active probe brings it back')
  b.mode = { busy: true }
  t.equal((await send(env, 'ollama', LLAMA, { content: 'c3' })).status, 200)
  t.same(chats(a), ['c3'], 'A serves again')
})

t.test('upstream 503 (busy) and 429 (rate limited) move the request to another backend', async (t) => {
  const a = await ollama(t, LOADED)
  const b = await ollama(t)
  a.mode = { busy: true }
  const env = await gateway(t, [backend('a', a), backend('b', b)])
  for (const surface of ['ollama', 'openai'] as const) t.equal((await send(env, surface, LLAMA, { content: `busy-${surface}` })).status, 200, surface)
  t.same(chats(a), ['busy-ollama', 'busy-openai'], 'A (model loaded) was asked first')
  t.same(chats(b), ['busy-ollama', 'busy-openai'])
  t.ok(env.pool.backends[0]!.isUp(), 'busy is not down')

  const xa = await xinference(t)
  const xb = await xinference(t)
  const xenv = await gateway(t, [backend('xa', xa, 1), backend('xb', xb, 3)])
  xa.mode = { rateLimited: true }
  xb.mode = { holdOpen: true }
  const parked = new AbortController() // one request parked on B makes A the least busy: A is asked first
  t.teardown(() => parked.abort())
  send(xenv, 'openai', QWEN, { content: 'parked', signal: parked.signal }).catch(() => undefined)
  await xb.waitForRequests(1, '/v1/chat/completions')
  xb.mode = {}
  for (const stream of [false, true]) {
    const res = await send(xenv, 'openai', QWEN, { content: `limited-${stream}`, stream })
    t.equal(res.status, 200, `stream: ${stream}`)
    const text = await res.text()
    if (stream) {
      t.match(text, /data: \[DONE\]\s*$/, 'a clean stream')
      t.notMatch(text, /"error"/)
    } else t.equal(JSON.parse(text).choices[0].message.content, 'Hello from qwen2.5-instruct!')
  }
  t.same(chats(xa).slice(-2), ['limited-false', 'limited-true'], 'A was asked first and refused')
  t.same(chats(xb), ['parked', 'limited-false', 'limited-true'])
})

t.test('only busy backends: 503 with Retry-After in the caller\'s protocol', async (t) => {
  for (const kind of ['ollama', 'xinference'] as const) {
    const [a, b] = kind === 'ollama' ? [await ollama(t), await ollama(t)] : [await xinference(t), await xinference(t)]
    a.mode = b.mode = { busy: true }
    const env = await gateway(t, [backend('a', a), backend('b', b)])
    const res = await send(env, kind === 'ollama' ? 'ollama' : 'openai', kind === 'ollama' ? LLAMA : QWEN, { stream: true })
    t.equal(res.status, 503, kind)
    t.match(res.headers.get('retry-after'), positiveInteger)
    const body = await res.json()
    if (kind === 'ollama') t.same(body, { error: OLLAMA_BUSY })
    else t.match(body, { error: { message: /Model is loading/, type: 'api_error' } })
    t.same([chats(a).length, chats(b).length], [1, 1], 'both were tried')
  }
})

t.test('no retry once the first byte reached the client', async (t) => {
  const a = await ollama(t, LOADED)
  const b = await ollama(t)
  a.mode = { failAfterChunks: 2, chunkDelayMs: 10 }
  const env = await gateway(t, [backend('a', a), backend('b', b)])
  for (const surface of ['ollama', 'openai'] as const) {
    const res = await send(env, surface, LLAMA, { content: `fail-${surface}`, stream: true })
    t.equal(res.status, 200)
    const last = (await res.text()).trim().split('\n').at(-1)!
    t.match(JSON.parse(last.replace(/^data: /, '')), { error: surface === 'ollama' ? String : { message: String } }, `${surface}: ends with an error`)
  }
  t.same(chats(a), ['fail-ollama', 'fail-openai'])
  t.same(chats(b), [], 'B never re-ran it')
})

t.test('a non-streamed 500 becomes 502 with the upstream message, in the caller\'s protocol', async (t) => {
  const message = 'GPU has fallen off the bus'
  for (const [surface, kind] of [['ollama', 'ollama'], ['openai', 'ollama'], ['openai', 'xinference']] as const) {
    const e = kind === 'ollama' ? await ollama(t) : await xinference(t)
    e.mode = { httpError: { status: 500, message } }
    const env = await gateway(t, [backend(`${kind}-500`, e)])
    const res = await send(env, surface, kind === 'ollama' ? LLAMA : QWEN)
    t.equal(res.status, 502, `${surface} from ${kind}`)
    const body = await res.json() as any
    if (surface === 'ollama') t.match(body, { error: new RegExp(message) })
    else t.match(body, { error: { message: new RegExp(message), type: 'api_error' } })
  }
})

t.test('the backend never sees more than maxConcurrent requests at once', async (t) => {
  const o = await ollama(t)
  o.mode = { firstTokenDelayMs: 20, chunkDelayMs: 2 }
  const env = await gateway(t, [backend('o', o, 2)])
  const ollamaClient = new Ollama({ host: env.gw.url, headers: env.gw.auth(), fetch: env.fetch })
  const openai = new OpenAI({ baseURL: `${env.gw.url}/v1`, apiKey: env.gw.token(), maxRetries: 0, fetch: env.fetch })
  const answers = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
    const messages = [{ role: 'user' as const, content: `n${i}` }]
    if (i % 2 === 1) return (await openai.chat.completions.create({ model: LLAMA, messages })).choices[0]?.message.content
    if (i % 4 === 2) return (await ollamaClient.chat({ model: LLAMA, messages })).message.content
    let text = ''
    for await (const part of await ollamaClient.chat({ model: LLAMA, messages, stream: true })) text += part.message.content
    return text
  }))
  t.same(answers, Array(10).fill('Hello from llama3.2:latest!'))
  t.equal(chats(o).length, 10)
  t.ok(o.maxInFlight <= 2, `maxInFlight ${o.maxInFlight}`)
  t.equal(o.maxInFlight, 2, 'both slots were used')
  t.equal(env.pool.backends[0]!.inFlight, 0)
})
