// Usage accounting: every model request leaves one record (user, key, model, backend, tokens,
// duration, time to first token, status) with exactly the tokens the backend reported, whichever
// client called and whether or not the gateway translated, streamed or not.
import t from 'tap'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { get, setup } from './helpers/usage.js'

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const part of it) out.push(part)
  return out
}

interface Expected { user: string, model: string, backend: string, endpoint: string, promptTokens: number, completionTokens: number, chat: boolean }

t.test('usage matches the tokens the emulated backends reported, streamed or not, translated or not, chats and embeddings', async (t) => {
  const { gw, o } = await setup(t)
  o.mode.replyTokens = ['Hi', ' there', '!'] // Ollama answers 3 tokens, Xinference 4
  const expected: Expected[] = []
  const expect = (e: Expected, reported: { prompt: number | undefined, completion: number | undefined }): void => {
    // What the client saw is what the backend reported (passed through or translated).
    t.same([reported.prompt, reported.completion], [e.promptTokens, e.chat ? e.completionTokens : undefined], `${e.user} ${e.endpoint} ${e.model}: the client saw the backend's usage`)
    expected.push(e)
  }
  const chatPath = '/v1/chat/completions'

  // alice: the openai client, onto Ollama (translated) and Xinference (passed through).
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token('user', 'alice'), maxRetries: 0 })
  const say = (content: string): Array<{ role: 'user', content: string }> => [{ role: 'user', content }]
  let res = await openai.chat.completions.create({ model: 'llama3.2', messages: say('one two three') })
  expect({ user: 'alice', model: 'llama3.2', backend: 'ol', endpoint: chatPath, promptTokens: 3, completionTokens: 3, chat: true }, { prompt: res.usage?.prompt_tokens, completion: res.usage?.completion_tokens })
  let chunks = await collect(await openai.chat.completions.create({ model: 'llama3.2', stream: true, stream_options: { include_usage: true }, messages: say('one two three four') }))
  expect({ user: 'alice', model: 'llama3.2', backend: 'ol', endpoint: chatPath, promptTokens: 4, completionTokens: 3, chat: true }, { prompt: chunks.at(-1)!.usage?.prompt_tokens, completion: chunks.at(-1)!.usage?.completion_tokens })
  res = await openai.chat.completions.create({ model: 'qwen2.5-instruct', messages: say('a b') })
  expect({ user: 'alice', model: 'qwen2.5-instruct', backend: 'xi', endpoint: chatPath, promptTokens: 2, completionTokens: 4, chat: true }, { prompt: res.usage?.prompt_tokens, completion: res.usage?.completion_tokens })
  chunks = await collect(await openai.chat.completions.create({ model: 'qwen2.5-instruct', stream: true, stream_options: { include_usage: true }, messages: say('a b c d e') }))
  expect({ user: 'alice', model: 'qwen2.5-instruct', backend: 'xi', endpoint: chatPath, promptTokens: 5, completionTokens: 4, chat: true }, { prompt: chunks.at(-1)!.usage?.prompt_tokens, completion: chunks.at(-1)!.usage?.completion_tokens })
  // Streamed without include_usage: the client sees no usage, the gateway still counts it.
  await collect(await openai.chat.completions.create({ model: 'qwen2.5-instruct', stream: true, messages: say('c d e') }))
  expected.push({ user: 'alice', model: 'qwen2.5-instruct', backend: 'xi', endpoint: chatPath, promptTokens: 3, completionTokens: 4, chat: true })
  const emb = await openai.embeddings.create({ model: 'all-minilm', input: ['a b c', 'd e'] })
  expect({ user: 'alice', model: 'all-minilm', backend: 'ol', endpoint: '/v1/embeddings', promptTokens: 5, completionTokens: 0, chat: false }, { prompt: emb.usage.prompt_tokens, completion: undefined })

  // bob: the ollama client, onto Ollama (passed through) and Xinference (translated).
  const ollama = new Ollama({ host: gw.url, headers: gw.auth('user', 'bob') })
  const whole = await ollama.chat({ model: 'llama3.2', messages: say('x y') })
  expect({ user: 'bob', model: 'llama3.2', backend: 'ol', endpoint: '/api/chat', promptTokens: 2, completionTokens: 3, chat: true }, { prompt: whole.prompt_eval_count, completion: whole.eval_count })
  let parts = await collect(await ollama.chat({ model: 'llama3.2', stream: true, messages: say('x y z') }))
  expect({ user: 'bob', model: 'llama3.2', backend: 'ol', endpoint: '/api/chat', promptTokens: 3, completionTokens: 3, chat: true }, { prompt: parts.at(-1)!.prompt_eval_count, completion: parts.at(-1)!.eval_count })
  const translated = await ollama.chat({ model: 'qwen2.5-instruct', messages: say('p q r s') })
  expect({ user: 'bob', model: 'qwen2.5-instruct', backend: 'xi', endpoint: '/api/chat', promptTokens: 4, completionTokens: 4, chat: true }, { prompt: translated.prompt_eval_count, completion: translated.eval_count })
  parts = await collect(await ollama.chat({ model: 'qwen2.5-instruct', stream: true, messages: say('p q r s t u') }))
  expect({ user: 'bob', model: 'qwen2.5-instruct', backend: 'xi', endpoint: '/api/chat', promptTokens: 6, completionTokens: 4, chat: true }, { prompt: parts.at(-1)!.prompt_eval_count, completion: parts.at(-1)!.eval_count })
  const generated = await collect(await ollama.generate({ model: 'llama3.2', stream: true, prompt: 'g h' }))
  expect({ user: 'bob', model: 'llama3.2', backend: 'ol', endpoint: '/api/generate', promptTokens: 2, completionTokens: 3, chat: true }, { prompt: generated.at(-1)!.prompt_eval_count, completion: generated.at(-1)!.eval_count })
  const embedded = await ollama.embed({ model: 'bge-small-en', input: ['one two three four'] })
  expect({ user: 'bob', model: 'bge-small-en', backend: 'xi', endpoint: '/api/embed', promptTokens: 4, completionTokens: 0, chat: false }, { prompt: embedded.prompt_eval_count, completion: undefined })
  const passed = await ollama.embed({ model: 'all-minilm', input: 'k l m' })
  expect({ user: 'bob', model: 'all-minilm', backend: 'ol', endpoint: '/api/embed', promptTokens: 3, completionTokens: 0, chat: false }, { prompt: passed.prompt_eval_count, completion: undefined })

  t.equal(gw.app.gateway.usage.pending, expected.length, 'the records wait in memory: the timer has not fired')
  const admin = gw.auth('admin')
  const listed = await get(gw, '/admin/usage/records?limit=1000', admin)
  t.equal(listed.status, 200)
  t.equal(gw.app.gateway.usage.pending, 0, 'answering a report wrote them')
  t.equal(listed.json.total, expected.length, 'one record per request')
  const recs = [...listed.json.records].reverse() // newest first
  expected.forEach((e, i) => {
    const r = recs[i]
    t.match(r, { user: e.user, role: 'user', key: null, model: e.model, backend: e.backend, endpoint: e.endpoint, promptTokens: e.promptTokens, completionTokens: e.completionTokens, totalTokens: e.promptTokens + e.completionTokens, estimated: false, status: 200 }, `record ${i}: ${e.user} ${e.endpoint} ${e.model}`)
    t.type(r.durationMs, 'number')
    if (e.chat) t.ok(typeof r.ttftMs === 'number' && r.ttftMs >= 0 && r.ttftMs <= r.durationMs, 'a chat has its time to first token, within its duration')
    else t.equal(r.ttftMs, null, 'embeddings have no first token')
    t.ok(Math.abs(Date.parse(r.time) - Date.now()) < 60_000, 'the time is when it arrived')
  })

  // Per user and model, and the totals: sums of what the backends reported.
  const byUserModel = new Map<string, { requests: number, promptTokens: number, completionTokens: number }>()
  for (const e of expected) {
    const k = `${e.user}|${e.model}`
    const sum = byUserModel.get(k) ?? { requests: 0, promptTokens: 0, completionTokens: 0 }
    byUserModel.set(k, { requests: sum.requests + 1, promptTokens: sum.promptTokens + e.promptTokens, completionTokens: sum.completionTokens + e.completionTokens })
  }
  const grouped = await get(gw, '/admin/usage?groupBy=user,model', admin)
  t.same(grouped.json.groupBy, ['user', 'model'])
  t.same(grouped.json.rows.map((r: any) => ({ k: `${r.user}|${r.model}`, requests: r.requests, promptTokens: r.promptTokens, completionTokens: r.completionTokens })),
    [...byUserModel].sort(([a], [b]) => a < b ? -1 : 1).map(([k, v]) => ({ k, ...v })))
  const prompt = expected.reduce((n, e) => n + e.promptTokens, 0)
  const completion = expected.reduce((n, e) => n + e.completionTokens, 0)
  t.match(grouped.json.totals, { requests: expected.length, errors: 0, estimated: 0, promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion, avgDurationMs: Number, avgTtftMs: Number })

  const byDay = await get(gw, '/admin/usage', admin)
  t.same(byDay.json.groupBy, ['day', 'user', 'model'], 'by day, user and model unless told otherwise')
  const today = new Date().toISOString().slice(0, 10)
  t.ok(byDay.json.rows.every((r: any) => r.day === today))
  const byUser = await get(gw, '/admin/usage?groupBy=user', admin)
  t.same(byUser.json.rows.map((r: any) => [r.user, r.totalTokens]), ['alice', 'bob'].map((u) => [u, expected.filter((e) => e.user === u).reduce((n, e) => n + e.promptTokens + e.completionTokens, 0)]))
  const byModel = await get(gw, '/admin/usage?groupBy=model&model=llama3.2', admin)
  t.same(byModel.json.rows.map((r: any) => [r.model, r.requests, r.promptTokens, r.completionTokens]), [['llama3.2', 5, 14, 15]])
})

t.test('an API key\'s id is recorded; failed requests are recorded with their status', async (t) => {
  const { gw, x } = await setup(t)
  const admin = gw.auth('admin')
  const made = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ owner: 'erin', name: 'notebook' }) })
  t.equal(made.status, 201)
  const key = await made.json() as { key: string, id: string }
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key.key, maxRetries: 0 })
  await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'with a key' }] })
  const viaHeader = await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { 'x-api-key': key.key }, body: JSON.stringify({ model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'and again' }] }) })
  t.equal(viaHeader.status, 200)
  await viaHeader.text()
  await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token('user', 'erin'), maxRetries: 0 }).chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'with a login' }] })

  // The backend refuses the model (embedding-only), or fails outright.
  const ollama = new Ollama({ host: gw.url, headers: gw.auth('user', 'alice') })
  await t.rejects(ollama.chat({ model: 'all-minilm', messages: [{ role: 'user', content: 'chat with an embedder' }] }))
  x.mode.httpError = { status: 500, message: 'boom' }
  await t.rejects(new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token('user', 'alice'), maxRetries: 0 }).chat.completions.create({ model: 'qwen2.5-instruct', messages: [{ role: 'user', content: 'fail' }] }))

  const byKey = await get(gw, '/admin/usage?groupBy=user,key', admin)
  t.equal(byKey.json.rows.length, 3)
  t.match(byKey.json.rows, [
    { user: 'alice', key: null, requests: 2, errors: 2 },
    { user: 'erin', key: null, requests: 1, errors: 0, promptTokens: 3 },
    { user: 'erin', key: key.id, requests: 2, errors: 0, promptTokens: 5, completionTokens: 8 },
  ])
  const onlyKey = await get(gw, `/admin/usage/records?key=${key.id}`, admin)
  t.same(onlyKey.json.records.map((r: any) => [r.user, r.key, r.endpoint]), [['erin', key.id, '/api/chat'], ['erin', key.id, '/v1/chat/completions']])
  const mine = await get(gw, '/v1/me/usage?groupBy=key', { authorization: `Bearer ${key.key}` })
  t.same(mine.json.rows.map((r: any) => [r.key, r.requests]), [[null, 1], [key.id, 2]], 'a key sees its owner\'s usage')

  const failed = await get(gw, '/admin/usage/records?user=alice', admin)
  t.equal(failed.json.records.length, 2)
  t.match(failed.json.records, [
    { model: 'qwen2.5-instruct', backend: 'xi', status: 502, promptTokens: 0, completionTokens: 0, ttftMs: null, durationMs: Number },
    { model: 'all-minilm', backend: 'ol', status: 400, promptTokens: 0, completionTokens: 0, ttftMs: null, durationMs: Number },
  ])
  t.match((await get(gw, '/admin/usage?groupBy=model&user=alice', admin)).json.totals, { requests: 2, errors: 2 })
})

t.test('a stream that breaks after its 200 is recorded as the failure it was; one the client leaves with what it got', async (t) => {
  const { gw, o } = await setup(t)
  const alice = gw.auth('user', 'carl')
  o.mode = { failAfterChunks: 2 }
  const broken = await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'a b' }] }) })
  t.equal(broken.status, 200)
  t.match(await broken.text(), /"error":/)

  o.mode = { holdOpen: true }
  const leaving = new AbortController()
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', signal: leaving.signal, headers: { ...alice, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'abcdefgh' }] }) })
  const reader = res.body!.getReader()
  await reader.read()
  leaving.abort()
  await o.waitForAborts(1)
  // The record is written once the gateway has let go of the stream: ask until it is there.
  let records: any[] = []
  while (records.length < 2) records = (await get(gw, '/v1/me/usage/records', alice)).json.records
  t.match(records.find((r) => r.endpoint === '/api/chat'), { status: 502, promptTokens: 1, completionTokens: 2, estimated: true }, 'charged for the two pieces it delivered')
  t.match(records.find((r) => r.endpoint === '/v1/chat/completions'), { status: 499, promptTokens: 2, completionTokens: 1, estimated: true })
})
