// The OpenAI surface as the official `openai` client sees it: translated onto an Ollama backend,
// passed through to Xinference and to a type `openai` backend (an Ollama emulator's /v1 routes).
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

const client = (gw: Gateway): OpenAI => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token(), maxRetries: 0 })
const weatherTool = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const PNG = 'iVBORw0KGgoAAAANSUhEUg=='
const MODIFIED_UNIX = Date.parse('2025-06-01T12:00:00Z') / 1000

/** POST with a bearer token; the body as text, and each SSE event's data (comments skipped). */
async function post (gw: Gateway, path: string, body: unknown, role: 'user' | 'admin' = 'user'): Promise<{ status: number, type: string | null, accel: string | null, raw: string, json: any, events: string[] }> {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...gw.auth(role), 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const raw = await res.text()
  const events = raw.split(/\r?\n\r?\n/).flatMap((block) => block.split(/\r?\n/).filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)))
  let json: unknown
  try { json = JSON.parse(raw) } catch {}
  return { status: res.status, type: res.headers.get('content-type'), accel: res.headers.get('x-accel-buffering'), raw, json, events }
}
const chunks = (events: string[]): any[] => events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e))

async function ollamaSetup (t: Test, extra: Record<string, unknown> = {}): Promise<{ o: OllamaEmulator, gw: Gateway }> {
  const o = await OllamaEmulator.start({ embeddingModels: ['all-minilm:latest'] })
  t.teardown(() => o.close())
  return { o, gw: await startGateway(t, [{ name: 'ol', type: 'ollama', url: o.url }], extra) }
}

t.test('Ollama backend: non-streamed chat is translated, sampling options become Ollama options', async (t) => {
  const { o, gw } = await ollamaSetup(t)
  const messages = [{ role: 'system' as const, content: 'Be brief' }, { role: 'user' as const, content: 'why is the sky blue' }]
  const res = await client(gw).chat.completions.create({ model: 'llama3.2', messages, max_tokens: 10, temperature: 0.2, seed: 7, stop: ['END'], top_p: 0.9 })
  t.equal(res.object, 'chat.completion')
  t.equal(res.model, 'llama3.2', 'the model the client named')
  t.match(res.id, /^chatcmpl-/)
  t.strictSame(res.choices, [{ index: 0, message: { role: 'assistant', content: 'Hello from llama3.2:latest!' }, finish_reason: 'stop' }])
  t.strictSame(res.usage, { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 }, 'prompt_eval_count/eval_count become usage')
  const up = o.requests.find((r) => r.path === '/api/chat')!
  t.strictSame(up.body, {
    model: 'llama3.2:latest',
    messages: [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'why is the sky blue' }],
    stream: false,
    options: { temperature: 0.2, top_p: 0.9, seed: 7, stop: ['END'], num_predict: 10 },
  })
  t.equal(up.headers.authorization, undefined, 'the client\'s token is not forwarded')

  const cut = await client(gw).chat.completions.create({ model: 'llama3.2', messages, max_tokens: 2, stop: 'END' })
  t.equal(cut.choices[0]!.message.content, 'Hello from')
  t.equal(cut.choices[0]!.finish_reason, 'length', 'done_reason length ⇒ finish_reason length')
  t.strictSame(cut.usage, { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 })
  t.strictSame(o.requests.filter((r) => r.path === '/api/chat')[1]!.body.options, { stop: ['END'], num_predict: 2 }, 'a stop string becomes a list')
})

t.test('Ollama backend: streamed chat has role only first, one finish chunk, usage only when asked, [DONE]', async (t) => {
  const { gw } = await ollamaSetup(t)
  const body = { model: 'llama3.2', stream: true as const, messages: [{ role: 'user' as const, content: 'why is the sky blue' }] }
  const plain = await post(gw, '/v1/chat/completions', body)
  t.equal(plain.status, 200)
  t.match(plain.type, /^text\/event-stream/)
  t.equal(plain.accel, 'no', 'proxies in front must not buffer the stream')
  t.equal(plain.events.at(-1), '[DONE]')
  const cs = chunks(plain.events)
  t.same(cs.map((c) => c.choices[0].delta), [{ role: 'assistant', content: 'Hello' }, { content: ' from' }, { content: ' llama3.2:latest' }, { content: '!' }, {}])
  t.same(cs.map((c) => c.choices[0].finish_reason), [null, null, null, null, 'stop'])
  t.equal(new Set(cs.map((c) => c.id)).size, 1, 'one id for the stream')
  t.equal(new Set(cs.map((c) => c.created)).size, 1, 'one created for the stream')
  t.ok(cs.every((c) => c.object === 'chat.completion.chunk' && c.model === 'llama3.2' && !('usage' in c)), 'no usage without include_usage')

  const withUsage = chunks((await post(gw, '/v1/chat/completions', { ...body, stream_options: { include_usage: true } })).events)
  t.equal(withUsage.length, 6)
  t.strictSame(withUsage.at(-1).choices, [])
  t.strictSame(withUsage.at(-1).usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })

  const stream = await client(gw).chat.completions.create({ ...body, stream_options: { include_usage: true } })
  let text = ''
  let usage: unknown
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    if (chunk.usage) usage = chunk.usage
  }
  t.equal(text, 'Hello from llama3.2:latest!')
  t.strictSame(usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })
})

t.test('Ollama backend: tool calls become JSON-string arguments with finish_reason tool_calls; results pair back', async (t) => {
  const { o, gw } = await ollamaSetup(t)
  const ask = { role: 'user' as const, content: 'What is the weather in Tokyo?' }
  const res = await client(gw).chat.completions.create({ model: 'llama3.2', messages: [ask], tools: weatherTool })
  t.equal(res.choices[0]!.finish_reason, 'tool_calls')
  t.strictSame(res.choices[0]!.message.tool_calls, [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Tokyo"}' } }])
  t.strictSame(o.requests.at(-1)!.body.tools, weatherTool, 'tools are sent on as they are')

  const stream = await client(gw).chat.completions.create({ model: 'llama3.2', messages: [ask], tools: weatherTool, stream: true })
  const deltas: any[] = []
  const finishes: unknown[] = []
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.tool_calls) deltas.push(...chunk.choices[0].delta.tool_calls)
    if (chunk.choices[0]?.finish_reason) finishes.push(chunk.choices[0].finish_reason)
  }
  t.strictSame(deltas, [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Tokyo"}' } }])
  t.strictSame(finishes, ['tool_calls'])

  await client(gw).chat.completions.create({
    model: 'llama3.2',
    tools: weatherTool,
    messages: [ask, res.choices[0]!.message as OpenAI.ChatCompletionMessageParam, { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 24°C' }],
  })
  const sent = o.requests.at(-1)!.body.messages
  t.strictSame(sent.slice(1), [
    { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', function: { name: 'get_weather', arguments: { city: 'Tokyo' } } }] },
    { role: 'tool', content: 'sunny, 24°C', tool_name: 'get_weather', tool_call_id: 'call_1' },
  ], 'arguments go back as an object, the tool result carries the tool name')
})

t.test('Ollama backend: data: URL images become base64 images; remote image URLs are refused with 400', async (t) => {
  const { o, gw } = await ollamaSetup(t)
  const res = await client(gw).chat.completions.create({
    model: 'llama3.2',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }],
  })
  t.equal(res.choices[0]!.message.content, 'Hello image llama3.2:latest!')
  t.strictSame(o.requests.at(-1)!.body.messages, [{ role: 'user', content: 'what is this', images: [PNG] }])

  const before = o.requests.length
  const remote = await post(gw, '/v1/chat/completions', { model: 'llama3.2', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] })
  t.equal(remote.status, 400)
  t.equal(remote.json.error.type, 'invalid_request_error')
  t.match(remote.json.error.message, /data: URL/)
  t.equal(o.requests.length, before, 'nothing reached the backend')
})

t.test('Ollama backend: reasoning_effort asks for thinking, which comes back as reasoning', async (t) => {
  const { o, gw } = await ollamaSetup(t)
  const messages = [{ role: 'user' as const, content: 'think first' }]
  const res = await client(gw).chat.completions.create({ model: 'llama3.2', messages, reasoning_effort: 'high' })
  t.equal(o.requests.at(-1)!.body.think, 'high')
  t.equal((res.choices[0]!.message as any).reasoning, 'Let me think.')
  t.equal(res.choices[0]!.message.content, 'Hello from llama3.2:latest!')
  const stream = await client(gw).chat.completions.create({ model: 'llama3.2', messages, reasoning_effort: 'low', stream: true })
  const deltas: any[] = []
  for await (const chunk of stream) if (chunk.choices[0]) deltas.push(chunk.choices[0].delta)
  t.strictSame(deltas[0], { role: 'assistant', reasoning: 'Let me think.' }, 'the thinking delta comes first and carries the role')
  t.equal(deltas.filter((d) => 'role' in d).length, 1)
  t.equal(deltas.map((d) => d.content ?? '').join(''), 'Hello from llama3.2:latest!')
})

t.test('Ollama backend: embeddings as floats and as base64 float32', async (t) => {
  const { o, gw } = await ollamaSetup(t)
  const floats = await post(gw, '/v1/embeddings', { model: 'all-minilm', input: ['hello world', 'hi'] })
  t.equal(floats.status, 200)
  t.strictSame(floats.json, {
    object: 'list',
    data: [{ object: 'embedding', embedding: [11, 2, 0.5, -0.5], index: 0 }, { object: 'embedding', embedding: [2, 1, 0.5, -0.5], index: 1 }],
    model: 'all-minilm',
    usage: { prompt_tokens: 3, total_tokens: 3 },
  })
  t.strictSame(o.requests.at(-1)!.body, { model: 'all-minilm:latest', input: ['hello world', 'hi'] })

  const b64 = await post(gw, '/v1/embeddings', { model: 'all-minilm', input: 'a b c', encoding_format: 'base64' })
  const bytes = Buffer.from(b64.json.data[0].embedding as string, 'base64')
  t.equal(bytes.length, 16)
  t.strictSame([0, 4, 8, 12].map((i) => bytes.readFloatLE(i)), [5, 3, 0.5, -0.5])

  const viaClient = await client(gw).embeddings.create({ model: 'all-minilm', input: 'hello world' })
  t.strictSame(viaClient.data[0]!.embedding, [11, 2, 0.5, -0.5], 'the client\'s default base64 decodes to the same vector')
  t.strictSame(viaClient.usage, { prompt_tokens: 2, total_tokens: 2 })
})

t.test('Xinference pass-through: uid for model_name, backend apiKey instead of the client token, usage filtered', async (t) => {
  const x = await XinferenceEmulator.start({ apiKey: 'xk-secret', models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct', abilities: ['chat', 'tools'] }] })
  t.teardown(() => x.close())
  const gw = await startGateway(t, [{ name: 'xi', type: 'xinference', url: x.url, apiKey: 'xk-secret' }])
  const messages = [{ role: 'user' as const, content: 'why is the sky blue' }]

  const res = await client(gw).chat.completions.create({ model: 'qwen2.5-instruct', messages, max_tokens: 9, seed: 3 })
  t.equal(res.choices[0]!.message.content, 'Hello from qwen-a1b2!')
  t.equal(res.choices[0]!.finish_reason, 'stop')
  t.strictSame(res.usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })
  const up = x.requests.at(-1)!
  t.strictSame(up.body, { model: 'qwen-a1b2', messages, max_tokens: 9, seed: 3 }, 'the client\'s body, with the uid')
  t.equal(up.headers.authorization, 'Bearer xk-secret', 'the backend key, never the client\'s token')

  const plain = await post(gw, '/v1/chat/completions', { model: 'qwen2.5-instruct', messages, stream: true })
  t.strictSame(x.requests.at(-1)!.body.stream_options, { include_usage: true }, 'the gateway asks upstream for usage itself')
  t.equal(plain.events.at(-1), '[DONE]')
  const cs = chunks(plain.events)
  t.notOk(cs.some((c) => c.choices.length === 0), 'the usage-only chunk the client did not ask for is filtered out')
  t.equal(cs.map((c) => c.choices[0].delta.content ?? '').join(''), 'Hello from qwen-a1b2!')
  t.equal(cs.filter((c) => c.choices[0].delta.role !== undefined).length, 1, 'role only in the first delta')
  t.equal(cs.at(-1).choices[0].finish_reason, 'stop')

  const asked = chunks((await post(gw, '/v1/chat/completions', { model: 'qwen2.5-instruct', messages, stream: true, stream_options: { include_usage: true } })).events)
  const usageOnly = asked.filter((c) => c.choices.length === 0)
  t.equal(usageOnly.length, 1, 'exactly one usage chunk when asked')
  t.strictSame(usageOnly[0].usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })

  const stream = await client(gw).chat.completions.create({ model: 'qwen2.5-instruct', messages, stream: true })
  let text = ''
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
  t.equal(text, 'Hello from qwen-a1b2!', 'the client reads the CRLF-framed pass-through stream')

  const image = [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }]
  const remote = await post(gw, '/v1/chat/completions', { model: 'qwen2.5-instruct', messages: image })
  t.equal(remote.status, 200, 'a remote image URL is only refused when the backend is Ollama')
  t.strictSame(x.requests.at(-1)!.body.messages, image, 'and reaches an OpenAI-compatible backend as sent')
})

t.test('type openai backend pass-through: usage chunk filtered unless asked, tool calls and embeddings as sent', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'compat', type: 'openai', url: `${o.url}/v1`, apiKey: 'sk-upstream' }])
  const messages = [{ role: 'user', content: 'why is the sky blue' }]
  const plain = await post(gw, '/v1/chat/completions', { model: 'llama3.2:latest', messages, stream: true })
  const up = o.requests.at(-1)!
  t.equal(up.path, '/v1/chat/completions')
  t.strictSame(up.body, { model: 'llama3.2:latest', messages, stream: true, stream_options: { include_usage: true } })
  t.equal(up.headers.authorization, 'Bearer sk-upstream')
  t.equal(plain.events.at(-1), '[DONE]')
  const cs = chunks(plain.events)
  t.same(cs.map((c) => c.choices), [
    [{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }],
    [{ index: 0, delta: { content: ' from' }, finish_reason: null }],
    [{ index: 0, delta: { content: ' llama3.2:latest' }, finish_reason: null }],
    [{ index: 0, delta: { content: '!' }, finish_reason: null }],
    [{ index: 0, delta: {}, finish_reason: 'stop' }],
  ], 'no usage-only chunk')

  const asked = chunks((await post(gw, '/v1/chat/completions', { model: 'llama3.2:latest', messages, stream: true, stream_options: { include_usage: true } })).events)
  t.strictSame(asked.at(-1).usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })

  const tools = await client(gw).chat.completions.create({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'weather in Tokyo' }], tools: weatherTool })
  t.equal(tools.choices[0]!.finish_reason, 'tool_calls')
  t.equal(tools.choices[0]!.message.tool_calls![0]!.type === 'function' && tools.choices[0]!.message.tool_calls![0]!.function.arguments, '{"city":"Tokyo"}')

  const emb = await post(gw, '/v1/embeddings', { model: 'llama3.2:latest', input: 'hi there', encoding_format: 'base64' })
  t.equal(o.requests.at(-1)!.path, '/v1/embeddings')
  t.strictSame(o.requests.at(-1)!.body, { model: 'llama3.2:latest', input: 'hi there', encoding_format: 'base64' })
  const bytes = Buffer.from(emb.json.data[0].embedding as string, 'base64')
  t.strictSame([0, 4, 8, 12].map((i) => bytes.readFloatLE(i)), [8, 2, 0.5, -0.5])
})

t.test('model listings merge backends and aliases, filtered by role; 403 and 404 in OpenAI form', async (t) => {
  const o = await OllamaEmulator.start({ embeddingModels: ['all-minilm:latest'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'ol', type: 'ollama', url: o.url }, { name: 'xi', type: 'xinference', url: x.url }], {
    models: { aliases: { default: 'llama3.2' } },
    auth: { modelAccess: { user: ['llama*'] } },
  })
  const admin = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token('admin'), maxRetries: 0 })
  const all = (await admin.models.list()).data
  t.strictSame(all.map((m) => [m.id, m.owned_by, m.created]).sort(), [
    ['all-minilm:latest', 'ol', MODIFIED_UNIX], ['default', 'alias', MODIFIED_UNIX], ['llama3.2:latest', 'ol', MODIFIED_UNIX], ['qwen-a1b2', 'xi', 0],
  ])
  const mine = (await client(gw).models.list()).data
  t.strictSame(mine.map((m) => m.id).sort(), ['default', 'llama3.2:latest'], 'a user sees only what the rules allow')
  t.strictSame(await client(gw).models.retrieve('llama3.2:latest'), { id: 'llama3.2:latest', object: 'model', created: MODIFIED_UNIX, owned_by: 'ol' })

  const hidden = await fetch(`${gw.url}/v1/models/qwen-a1b2`, { headers: gw.auth() })
  t.equal(hidden.status, 404, 'a forbidden model is not revealed by /v1/models/:id')
  t.equal((await fetch(`${gw.url}/v1/models/qwen-a1b2`, { headers: gw.auth('admin') })).status, 200)

  const forbidden = await post(gw, '/v1/chat/completions', { model: 'qwen2.5-instruct', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(forbidden.status, 403)
  t.strictSame(forbidden.json, { error: { message: "model 'qwen2.5-instruct' is not available to role 'user'", type: 'permission_error', param: null, code: 'model_not_allowed' } })
  t.equal(x.requests.filter((r) => r.path === '/v1/chat/completions').length, 0, 'the forbidden request never left the gateway')
  const denied = await client(gw).embeddings.create({ model: 'all-minilm', input: 'x' }).catch((e: unknown) => e)
  t.ok(denied instanceof OpenAI.PermissionDeniedError, 'embeddings obey the rules too')

  const unknown = await post(gw, '/v1/chat/completions', { model: 'llama-nope', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(unknown.status, 404)
  t.strictSame(unknown.json, { error: { message: "model 'llama-nope' not found", type: 'not_found_error', param: null, code: 'model_not_found' } })
  const missing = await client(gw).models.retrieve('llama-nope').catch((e: unknown) => e) as InstanceType<typeof OpenAI.NotFoundError>
  t.ok(missing instanceof OpenAI.NotFoundError)
  t.equal(missing.message, "404 model 'llama-nope' not found")

  const viaAlias = await client(gw).chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(viaAlias.model, 'default')
  t.equal(viaAlias.choices[0]!.message.content, 'Hello from llama3.2:latest!')
  t.equal(o.requests.at(-1)!.body.model, 'llama3.2:latest', 'the alias resolves upstream')
})
