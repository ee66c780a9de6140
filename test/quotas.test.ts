// Token quotas and concurrent chats with the local store: exact counts, the 429 in each
// protocol, holds settled with the backend's real usage, released on failure, charged for what
// an aborted stream delivered, and exact under 100 concurrent streams.
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { chat, gate, hundredStreams, until } from './helpers/limits.js'

async function setup (t: Test, limits: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<{ gw: Gateway, o: OllamaEmulator }> {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url, maxConcurrent: 200 }], {
    limits,
    routing: { maxWaiting: 200, keepAliveMs: 600_000 },
    ...extra,
  })
  return { gw, o }
}

// The emulator counts a prompt's words (here 1) and answers 4 pieces, fewer when max_tokens says so;
// the gateway holds ceil(chars / 4) = 1 for the prompt plus max_tokens.
const SPENT = 5

t.test('a daily token quota admits exactly what fits, settles real usage and refuses the rest in each protocol', async (t) => {
  const { gw } = await setup(t, { tokensPerDay: { user: 30 } })
  const alice = gw.auth('user', 'alice')
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) statuses.push((await chat(gw, alice, { maxTokens: 9 })).status)
  // Each holds 10 and spends 5: 0+10, 5+10, …, 20+10 fit in 30; 25+10 does not.
  t.same(statuses, [200, 200, 200, 200, 200, 429])

  const refused = await chat(gw, alice, { maxTokens: 9 })
  t.equal(refused.status, 429)
  t.match(refused.json(), { error: { type: 'rate_limit_error', code: 'insufficient_quota', message: /^token quota exceeded: user 'alice' tokens per day \(limits\.tokensPerDay\.user\) is 30; 25 used or held by running requests, this request may use up to 10; resets in / } })
  const retryAfter = Number(refused.headers.get('retry-after'))
  const toMidnight = (Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1) - Date.now()) / 1000
  t.ok(retryAfter > 0 && Math.abs(retryAfter - toMidnight) < 5, `Retry-After ${retryAfter} s is the time to UTC midnight (${toMidnight})`)
  const ollamaRefused = await chat(gw, alice, { path: '/api/chat', maxTokens: 9 })
  t.equal(ollamaRefused.status, 429)
  t.match(ollamaRefused.json(), { error: /^token quota exceeded: user 'alice'/ })

  // A smaller answer still fits exactly: 25 + 1 + 4 = 30.
  const last = await chat(gw, alice, { maxTokens: 4 })
  t.equal(last.status, 200)
  t.equal(last.headers.get('x-ratelimit-limit-tokens'), '30')
  t.equal(last.headers.get('x-ratelimit-remaining-tokens'), '0')
  t.match(last.headers.get('x-ratelimit-reset-tokens'), /^[0-9]+s$/)
  t.equal((await chat(gw, alice, { maxTokens: 1 })).status, 429, 'spent to the last token')

  const bob = await chat(gw, gw.auth('user', 'bob'), { maxTokens: 9 })
  t.equal(bob.status, 200, "another user's quota is their own")
  t.equal(bob.headers.get('x-ratelimit-remaining-tokens'), '20')
  t.equal((await chat(gw, gw.auth('admin'), { maxTokens: 100000 })).status, 200, 'the admin role has no quota here')

  const tooBig = await chat(gw, gw.auth('user', 'carol'), { maxTokens: 100 })
  t.equal(tooBig.status, 429)
  t.match(tooBig.json().error.message, /this request may use up to 101 tokens, more than the whole quota of 30/)
})

t.test('the official openai client sees the quota as a RateLimitError', async (t) => {
  const { gw } = await setup(t, { tokensPerMonth: { user: 12 } })
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token('user', 'dave'), maxRetries: 0 })
  const ask = (): Promise<unknown> => client.chat.completions.create({ model: 'llama3.2', max_tokens: 9, messages: [{ role: 'user', content: 'hi' }] })
  await ask()
  const err = await ask().then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof OpenAI.RateLimitError, 'RateLimitError')
  t.match((err as InstanceType<typeof OpenAI.RateLimitError>).message, /tokens per month \(limits\.tokensPerMonth\.user\) is 12/)
})

t.test('100 concurrent streamed requests: the quota admits exactly what fits, never more', async (t) => {
  const { gw, o } = await setup(t, { tokensPerDay: { user: 500 } })
  const alice = gw.auth('user', 'alice')
  const { refusedWhileHeld, answers } = await hundredStreams([gw], o, alice)
  t.equal(refusedWhileHeld, 50, '500 tokens hold 50 requests of 10')
  t.equal(answers.filter((a) => a.status === 200).length, 50)
  t.ok(answers.filter((a) => a.status === 200).every((a) => a.text.includes('[DONE]') || a.text.includes('"done":true')), 'admitted streams complete')

  // Settled with what the backend reported: 50 × 5 used, so 25 more requests of 10 fit, not 26.
  const next = await chat(gw, alice, { maxTokens: 9 })
  t.equal(next.headers.get('x-ratelimit-remaining-tokens'), String(500 - 50 * SPENT - 10))
})

t.test('concurrent chats per user: the limit holds, and a finished, failed or abandoned chat frees its place', async (t) => {
  const { gw, o } = await setup(t, { concurrentStreams: { user: 2 }, users: { vip: { concurrentStreams: 3 } } })
  const held = gate()
  o.mode = { gate: held.promise }
  const alice = gw.auth('user', 'alice')
  const first = [chat(gw, alice, { stream: true }), chat(gw, alice, { path: '/api/chat' })]
  // Both are at the backend (discovery's requests to other paths do not count).
  await o.waitForRequests(2, '/api/chat')
  const third = await chat(gw, alice, { stream: true })
  t.equal(third.status, 429)
  t.match(third.json(), { error: { code: 'rate_limit_exceeded', message: "too many requests at once: user 'alice' chats at once (limits.concurrentStreams.user) allows 2; retry when one has finished" } })
  t.equal(third.headers.get('retry-after'), '1')
  // Per-user override.
  const vip = gw.auth('user', 'vip')
  const vips = [chat(gw, vip), chat(gw, vip), chat(gw, vip)]
  await o.waitForRequests(5, '/api/chat')
  t.equal((await chat(gw, vip)).status, 429)
  held.open()
  t.same((await Promise.all([...first, ...vips])).map((a) => a.status), [200, 200, 200, 200, 200])
  t.equal((await chat(gw, alice)).status, 200, 'finished chats freed their places')

  // A refused chat frees the place too.
  o.mode = { httpError: { status: 400, message: 'bad options' } }
  for (let i = 0; i < 3; i++) t.equal((await chat(gw, alice)).status, 400)

  // A client that leaves frees its place once the gateway has let go of the backend.
  o.mode = { holdOpen: true }
  const leaving = new AbortController()
  const gone = chat(gw, alice, { stream: true, signal: leaving.signal }).catch(() => 'aborted')
  const staying = new AbortController()
  const stays = chat(gw, alice, { stream: true, signal: staying.signal }).catch(() => 'aborted')
  await until(() => o.inFlight === 2)
  leaving.abort()
  t.equal(await gone, 'aborted')
  await o.waitForAborts(1)
  o.mode = {}
  let admitted = 0
  while (admitted === 0) if ((await chat(gw, alice)).status === 200) admitted++
  t.equal(admitted, 1, 'the abandoned place is free again')
  staying.abort()
  await stays
})

t.test('a failed chat releases its hold; an abandoned stream is charged for what it delivered', async (t) => {
  const { gw, o } = await setup(t, { tokensPerDay: { user: 100 } })
  const alice = gw.auth('user', 'alice')
  o.mode = { httpError: { status: 400, message: 'bad options' } }
  t.equal((await chat(gw, alice, { maxTokens: 9 })).status, 400)
  o.mode = {}
  t.equal((await chat(gw, alice, { maxTokens: 9 })).headers.get('x-ratelimit-remaining-tokens'), '90', 'nothing charged for the failure')

  // One piece reaches the client, then it leaves: prompt estimate 1 + 1 piece = 2.
  o.mode = { holdOpen: true }
  const controller = new AbortController()
  const res = await fetch(`${gw.url}/api/chat`, {
    method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, signal: controller.signal,
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 9 } }),
  })
  const reader = res.body!.getReader()
  const piece = await reader.read()
  t.match(Buffer.from(piece.value!).toString(), /"content":"Hello"/)
  controller.abort()
  await o.waitForAborts(1)
  o.mode = {}
  // The hold is settled once the relay has unwound: wait for that, then read the counter.
  const mine = async (): Promise<any> => ((await (await fetch(`${gw.url}/v1/me/limits`, { headers: alice })).json()) as any).quotas[0]
  let status = await mine()
  while (status.held !== 0) status = await mine()
  t.match(status, { limit: "user 'alice' tokens per day (limits.tokensPerDay.user)", kind: 'tokens', max: 100, used: SPENT + 2, held: 0, remaining: 100 - SPENT - 2, resetsAt: String })
})

t.test('an API key quota and a role-wide quota count with the user quota', async (t) => {
  const { gw } = await setup(t, { roleTokensPerDay: { user: 25 } })
  const { key } = gw.app.gateway.keys.create({ owner: 'alice', role: 'user', createdBy: 'test', limits: { tokensPerDay: 12 } })
  const viaKey = { authorization: `Bearer ${key}` }
  t.equal((await chat(gw, viaKey, { maxTokens: 9 })).status, 200)
  const second = await chat(gw, viaKey, { maxTokens: 9 })
  t.equal(second.status, 429, 'the key has 12 - 5 = 7 left, less than 10')
  t.match(second.json().error.message, /API key [0-9a-f-]+ tokens per day \(the key's tokensPerDay\) is 12/)
  t.equal((await chat(gw, gw.auth('user', 'alice'), { maxTokens: 9 })).status, 200, 'the same user without the key: only the role total (5 + 10 of 25)')
  const bob = gw.auth('user', 'bob')
  t.equal((await chat(gw, bob, { maxTokens: 9 })).status, 200, 'role total: 10 + 10 fits under 25')
  t.equal((await chat(gw, bob, { maxTokens: 9 })).status, 200, 'role total: 15 + 10 fits')
  const refused = await chat(gw, bob, { maxTokens: 9 })
  t.equal(refused.status, 429, 'role total: 20 + 10 does not')
  t.match(refused.json().error.message, /role 'user' \(all its users together\) tokens per day \(limits\.roleTokensPerDay\.user\) is 25/)
  t.equal((await chat(gw, bob, { maxTokens: 4 })).status, 200, '20 + 5 fits')
})
