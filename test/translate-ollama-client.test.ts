// The Ollama surface as the official `ollama` client sees it: passed through to Ollama, translated
// onto Xinference and type `openai` backends; model information and admin-only model management.
import t, { type Test } from 'tap'
import { Ollama, type ChatResponse, type Message } from 'ollama'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

const weatherTool = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const PNG = 'iVBORw0KGgoAAAANSUhEUg=='
const ollamaOf = (gw: Gateway, role: 'user' | 'admin' = 'user'): Ollama => new Ollama({ host: gw.url, headers: gw.auth(role) })
const sky = [{ role: 'user', content: 'why is the sky blue' }]

async function raw (gw: Gateway, method: string, path: string, body?: unknown, role: 'user' | 'admin' = 'user'): Promise<{ status: number, type: string | null, accel: string | null, text: string, json: any }> {
  const res = await fetch(`${gw.url}${path}`, { method, headers: { ...gw.auth(role), 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) })
  const text = await res.text()
  let json: unknown
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, type: res.headers.get('content-type'), accel: res.headers.get('x-accel-buffering'), text, json }
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const part of it) out.push(part)
  return out
}

/** An Ollama backend and a Xinference backend (with an API key) behind one gateway. */
async function pool (t: Test, extra: Record<string, unknown> = {}): Promise<{ o: OllamaEmulator, x: XinferenceEmulator, gw: Gateway }> {
  const o = await OllamaEmulator.start({ embeddingModels: ['all-minilm:latest'] })
  const x = await XinferenceEmulator.start({
    apiKey: 'xk-secret',
    models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct', abilities: ['chat', 'vision', 'tools'] }, { uid: 'bge-uid', name: 'bge-small-en', type: 'embedding' }],
  })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'ol', type: 'ollama', url: o.url }, { name: 'xi', type: 'xinference', url: x.url, apiKey: 'xk-secret' }], extra)
  return { o, x, gw }
}

t.test('Ollama backend: /api/chat and /api/generate pass through; the client token stays at the gateway', async (t) => {
  const { o, gw } = await pool(t)
  const parts = await collect(await ollamaOf(gw).chat({ model: 'llama3.2', messages: sky, stream: true, options: { temperature: 0.1, num_ctx: 2048 } }))
  t.strictSame(parts.map((p) => p.message.content), ['Hello', ' from', ' llama3.2:latest', '!', ''])
  t.match(parts.at(-1), { done: true, done_reason: 'stop', eval_count: 4, prompt_eval_count: 5 })
  const up = o.requests.find((r) => r.path === '/api/chat')!
  t.strictSame(up.body, { model: 'llama3.2:latest', messages: sky, stream: true, options: { temperature: 0.1, num_ctx: 2048 } }, 'the body as sent, model tagged')
  t.equal(up.headers.authorization, undefined, 'the client\'s Authorization is not forwarded')

  const whole = await ollamaOf(gw).chat({ model: 'llama3.2', messages: sky, stream: false })
  t.match(whole, { message: { role: 'assistant', content: 'Hello from llama3.2:latest!' }, done: true, eval_count: 4, prompt_eval_count: 5 })

  const r = await raw(gw, 'POST', '/api/chat', { model: 'llama3.2', messages: sky })
  t.equal(r.type, 'application/x-ndjson', 'Ollama streams unless told not to')
  t.equal(r.accel, 'no')
  t.equal(r.text.split('\n').filter(Boolean).length, 5)
  t.ok(r.text.endsWith('}\n'))

  const gen = await collect(await ollamaOf(gw).generate({ model: 'llama3.2', prompt: 'why is the sky blue', stream: true }))
  t.equal(o.requests.at(-1)!.path, '/api/generate')
  t.equal(gen.map((p) => p.response).join(''), 'Hello from llama3.2:latest!')
  t.match(gen.at(-1), { done: true, eval_count: 4, prompt_eval_count: 5, context: Array })
})

t.test('Xinference backend: streamed and whole /api/chat translated, options mapped, uid and apiKey sent', async (t) => {
  const { x, gw } = await pool(t)
  const messages = [{ role: 'system', content: 'Be brief' }, ...sky]
  const options = { num_predict: 50, temperature: 0.3, seed: 1, stop: ['END'], top_k: 20, num_ctx: 4096 }
  const parts = await collect(await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages, stream: true, options }))
  t.strictSame(parts.map((p) => p.message.content), ['Hello', ' from', ' qwen-a1b2', '!', ''])
  t.strictSame(parts.map((p) => p.done), [false, false, false, false, true])
  t.ok(parts.every((p) => p.model === 'qwen2.5-instruct' && p.message.role === 'assistant'))
  t.match(parts.at(-1), { done_reason: 'stop', eval_count: 4, prompt_eval_count: 7, total_duration: Number, eval_duration: Number, prompt_eval_duration: Number })
  const up = x.requests.at(-1)!
  t.equal(up.path, '/v1/chat/completions')
  t.strictSame(up.body, { model: 'qwen-a1b2', messages, stream: true, stream_options: { include_usage: true }, temperature: 0.3, top_k: 20, seed: 1, stop: ['END'], max_tokens: 50 })
  t.equal(up.headers.authorization, 'Bearer xk-secret')

  const whole = await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages, stream: false })
  t.match(whole, { model: 'qwen2.5-instruct', message: { role: 'assistant', content: 'Hello from qwen-a1b2!' }, done: true, done_reason: 'stop', eval_count: 4, prompt_eval_count: 7 })
  t.equal(x.requests.at(-1)!.body.stream, false)

  const cut = await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages, stream: false, options: { num_predict: 2 } })
  t.match(cut, { message: { content: 'Hello from' }, done_reason: 'length', eval_count: 2 })
  t.equal(x.requests.at(-1)!.body.max_tokens, 2)
})

t.test('Xinference backend: /api/generate becomes a chat with system and user messages', async (t) => {
  const { x, gw } = await pool(t)
  const parts = await collect(await ollamaOf(gw).generate({ model: 'qwen2.5-instruct', system: 'Be brief', prompt: 'why is the sky blue', stream: true }))
  t.strictSame(x.requests.at(-1)!.body.messages, [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'why is the sky blue' }])
  t.strictSame(parts.map((p) => p.response), ['Hello', ' from', ' qwen-a1b2', '!', ''])
  t.match(parts.at(-1), { model: 'qwen2.5-instruct', done: true, done_reason: 'stop', eval_count: 4, prompt_eval_count: 7 })
  t.notOk('message' in parts[0]!, 'generate chunks carry response, not message')
  const whole = await ollamaOf(gw).generate({ model: 'qwen2.5-instruct', prompt: 'hi', stream: false })
  t.match(whole, { response: 'Hello from qwen-a1b2!', done: true, eval_count: 4, prompt_eval_count: 1 })
})

t.test('final chunk always carries eval_count and prompt_eval_count from an OpenAI backend', async (t) => {
  const o = await OllamaEmulator.start()
  const x = await XinferenceEmulator.start({ usageOnFinishChunk: false })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'compat', type: 'openai', url: `${o.url}/v1` }, { name: 'xi', type: 'xinference', url: x.url }])
  for (const model of ['llama3.2:latest', 'qwen2.5-instruct']) {
    const parts = await collect(await ollamaOf(gw).chat({ model, messages: sky, stream: true }))
    t.equal(parts.map((p) => p.message.content).join(''), `Hello from ${model}!`, model)
    t.match(parts.at(-1), { done: true, eval_count: 4, prompt_eval_count: 5 }, `${model}: usage from the usage-only chunk`)
  }
  t.strictSame(o.requests.at(-1)!.body.stream_options, { include_usage: true })
  t.equal(o.requests.at(-1)!.headers.authorization, undefined, 'no key configured: no Authorization upstream')

  const thought = await ollamaOf(gw).chat({ model: 'llama3.2:latest', messages: sky, think: 'high', stream: false })
  t.equal(o.requests.at(-1)!.body.reasoning_effort, 'high')
  t.match(thought.message, { thinking: 'Let me think.', content: 'Hello from llama3.2:latest!' }, 'OpenAI reasoning becomes Ollama thinking')
})

t.test('Xinference backend: tool calls assembled into one chunk with object arguments; tool results paired', async (t) => {
  const { x, gw } = await pool(t)
  const ask = { role: 'user', content: 'What is the weather in Tokyo?' }
  const parts = await collect(await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages: [ask], tools: weatherTool, stream: true }))
  const withCalls = parts.filter((p) => p.message.tool_calls !== undefined)
  t.equal(withCalls.length, 1, 'the streamed deltas arrive as one tool_calls chunk')
  t.match(withCalls[0]!.message.tool_calls, [{ id: /^call_/, function: { index: 0, name: 'get_weather', arguments: { city: 'Tokyo' } } }])
  t.strictSame(withCalls[0]!.message.tool_calls![0]!.function.arguments, { city: 'Tokyo' })
  t.match(parts.at(-1), { done: true, done_reason: 'stop', eval_count: 4, prompt_eval_count: 6 })
  t.strictSame(x.requests.at(-1)!.body.tools, weatherTool)

  const whole = await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages: [ask], tools: weatherTool, stream: false })
  t.match(whole.message.tool_calls, [{ id: /^call_/, function: { name: 'get_weather', arguments: { city: 'Tokyo' } } }])

  const call: Message = { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Tokyo' } } }] }
  await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', tools: weatherTool, stream: false, messages: [ask, call, { role: 'tool', content: 'sunny', tool_name: 'get_weather' }] })
  t.strictSame(x.requests.at(-1)!.body.messages.slice(1), [
    { role: 'assistant', content: '', tool_calls: [{ id: 'call_1_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Tokyo"}' } }] },
    { role: 'tool', content: 'sunny', tool_call_id: 'call_1_0' },
  ], 'arguments as a JSON string; the tool result refers to the call by id')
})

t.test('Xinference backend: base64 images become data: URL parts; thinking comes from reasoning_content', async (t) => {
  const { x, gw } = await pool(t)
  const res = await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', stream: false, messages: [{ role: 'user', content: 'what is this', images: [PNG] }] })
  t.equal(res.message.content, 'Hello image qwen-a1b2!')
  t.strictSame(x.requests.at(-1)!.body.messages, [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }])

  const parts = await collect(await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages: sky, think: true, stream: true }))
  t.strictSame(x.requests.at(-1)!.body.chat_template_kwargs, { enable_thinking: true })
  t.strictSame(parts.filter((p) => p.message.thinking !== undefined).map((p) => p.message.thinking), ['Let me think.'])
  t.equal(parts.map((p) => p.message.content).join(''), 'Hello from qwen-a1b2!')
  const whole = await ollamaOf(gw).chat({ model: 'qwen2.5-instruct', messages: sky, think: true, stream: false })
  t.match(whole.message, { thinking: 'Let me think.', content: 'Hello from qwen-a1b2!' })
})

t.test('embeddings: /api/embed and /api/embeddings on both backends', async (t) => {
  const { o, x, gw } = await pool(t)
  const translated = await ollamaOf(gw).embed({ model: 'bge-small-en', input: ['hello world', 'hi'] })
  t.strictSame(translated, { model: 'bge-small-en', embeddings: [[11, 2, 0.5, -0.5], [2, 1, 0.5, -0.5]], prompt_eval_count: 3 })
  t.strictSame(x.requests.at(-1)!.body, { model: 'bge-uid', input: ['hello world', 'hi'], encoding_format: 'float' })
  t.strictSame(await ollamaOf(gw).embeddings({ model: 'bge-small-en', prompt: 'hello world' }), { embedding: [11, 2, 0.5, -0.5] })

  const native = await ollamaOf(gw).embed({ model: 'all-minilm', input: 'a b c' })
  t.match(native, { model: 'all-minilm:latest', embeddings: [[5, 3, 0.5, -0.5]], prompt_eval_count: 3 })
  t.strictSame(o.requests.at(-1)!.body, { model: 'all-minilm:latest', input: 'a b c' })
  t.strictSame(await ollamaOf(gw).embeddings({ model: 'all-minilm', prompt: 'hi' }), { embedding: [2, 1, 0.5, -0.5] })
  t.equal(o.requests.at(-1)!.path, '/api/embeddings')
})

t.test('/api/show forwards to Ollama, describes Xinference models, 404 in Ollama form', async (t) => {
  const { o, gw } = await pool(t)
  const native = await ollamaOf(gw).show({ model: 'llama3.2' })
  t.strictSame(native.capabilities, ['completion', 'tools', 'thinking', 'vision'])
  t.strictSame(o.requests.at(-1)!.body, { model: 'llama3.2:latest' })
  t.strictSame(await ollamaOf(gw).show({ model: 'qwen2.5-instruct' }), {
    modelfile: '', parameters: '', template: '',
    details: { parent_model: '', format: 'pytorch', family: 'qwen2.5-instruct', families: null, parameter_size: '0_5', quantization_level: 'none' },
    model_info: { 'general.context_length': 32768 },
    capabilities: ['completion', 'vision', 'tools'],
  })
  const missing = await raw(gw, 'POST', '/api/show', { model: 'nope' })
  t.equal(missing.status, 404)
  t.strictSame(missing.json, { error: "model 'nope' not found" })
  await t.rejects(ollamaOf(gw).show({ model: 'nope' }), { name: 'ResponseError', status_code: 404, error: "model 'nope' not found" })
})

t.test('tags, ps, version, / merged across backends and filtered by role; 403 and 404 in Ollama form', async (t) => {
  const a = await OllamaEmulator.start({ version: '0.12.0', loaded: ['llama3.2:latest'] })
  const b = await OllamaEmulator.start({ version: '0.9.1', models: ['mistral:7b'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([a.close(), b.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'a', type: 'ollama', url: a.url }, { name: 'b', type: 'ollama', url: b.url }, { name: 'xi', type: 'xinference', url: x.url }], {
    models: { aliases: { default: 'llama3.2' } },
    auth: { modelAccess: { user: ['llama*'] } },
  })
  const adminTags = (await ollamaOf(gw, 'admin').list()).models
  t.strictSame(adminTags.map((m) => m.name).sort(), ['default', 'llama3.2:latest', 'mistral:7b', 'qwen-a1b2'])
  const byName = new Map(adminTags.map((m) => [m.name, m]))
  t.equal(byName.get('default')!.digest, byName.get('llama3.2:latest')!.digest, 'the alias lists its target')
  t.match(byName.get('qwen-a1b2'), { model: 'qwen-a1b2', size: 0, details: { format: 'pytorch', family: 'qwen2.5-instruct', quantization_level: 'none' } })
  t.strictSame((await ollamaOf(gw).list()).models.map((m) => m.name).sort(), ['default', 'llama3.2:latest'], 'a user sees only allowed models')
  t.strictSame((await ollamaOf(gw, 'admin').ps()).models.map((m) => m.name).sort(), ['llama3.2:latest', 'qwen-a1b2'])
  t.strictSame((await ollamaOf(gw).ps()).models.map((m) => m.name), ['llama3.2:latest'])
  t.strictSame(await ollamaOf(gw).version(), { version: '0.9.1' }, 'the oldest Ollama in the pool')

  const root = await fetch(`${gw.url}/`, { headers: gw.auth() })
  t.equal(await root.text(), 'Ollama is running')
  t.match(root.headers.get('content-type'), /^text\/plain/)
  const head = await fetch(`${gw.url}/`, { method: 'HEAD', headers: gw.auth() })
  t.equal(head.status, 200)
  t.equal(await head.text(), '')

  const forbidden = await raw(gw, 'POST', '/api/chat', { model: 'qwen2.5-instruct', messages: sky })
  t.equal(forbidden.status, 403)
  t.strictSame(forbidden.json, { error: "model 'qwen2.5-instruct' is not available to role 'user'" })
  await t.rejects(ollamaOf(gw).embed({ model: 'mistral:7b', input: 'x' }), { name: 'ResponseError', status_code: 403 })
  t.equal(x.requests.filter((r) => r.path === '/v1/chat/completions').length + b.requests.filter((r) => r.path === '/api/embed').length, 0)
  const unknown = await raw(gw, 'POST', '/api/chat', { model: 'llama-nope', messages: sky })
  t.equal(unknown.status, 404)
  t.strictSame(unknown.json, { error: "model 'llama-nope' not found" })
  await t.rejects(ollamaOf(gw).generate({ model: 'llama-nope', prompt: 'x' }), { name: 'ResponseError', status_code: 404, error: "model 'llama-nope' not found" })

  const viaAlias = await ollamaOf(gw).chat({ model: 'default', messages: sky, stream: false })
  t.equal(viaAlias.message.content, 'Hello from llama3.2:latest!')
  t.equal(a.requests.at(-1)!.body.model, 'llama3.2:latest')
})

t.test('model management is admin-only, refused in Ollama form', async (t) => {
  const { o, gw } = await pool(t)
  for (const [method, path, body] of [['POST', '/api/pull', { model: 'mistral' }], ['POST', '/api/create', { model: 'm', from: 'llama3.2' }],
    ['POST', '/api/copy', { source: 'llama3.2', destination: 'c' }], ['DELETE', '/api/delete', { model: 'llama3.2' }]] as const) {
    const r = await raw(gw, method, path, body)
    t.equal(r.status, 403, path)
    t.strictSame(r.json, { error: `${path} is for admins only` })
  }
  await t.rejects(ollamaOf(gw).pull({ model: 'mistral' }), { name: 'ResponseError', status_code: 403, error: '/api/pull is for admins only' })
  t.equal(o.requests.filter((r) => /pull|create|copy|delete/.test(r.path)).length, 0, 'nothing reached the backend')
})

t.test('admins pull, copy, create and delete on the only Ollama backend; the pool sees the result at once', async (t) => {
  const { o, gw } = await pool(t)
  const admin = ollamaOf(gw, 'admin')
  const progress = await collect(await admin.pull({ model: 'mistral', stream: true }))
  t.equal(progress[0]!.status, 'pulling manifest')
  t.equal(progress.at(-1)!.status, 'success')
  t.strictSame(o.requests.filter((r) => r.path === '/api/pull').at(-1)!.body, { name: 'mistral', stream: true })
  t.ok((await admin.list()).models.some((m) => m.name === 'mistral:latest'), 'listed right after the pull')
  const reply: ChatResponse = await ollamaOf(gw).chat({ model: 'mistral', messages: sky, stream: false })
  t.equal(reply.message.content, 'Hello from mistral:latest!', 'and usable right away')

  t.strictSame(await admin.copy({ source: 'llama3.2', destination: 'llama-copy' }), { status: 'success' })
  t.strictSame(await admin.create({ model: 'my-llama', from: 'llama3.2', stream: false }), { status: 'success' })
  const names = (await admin.list()).models.map((m) => m.name)
  t.ok(names.includes('llama-copy:latest') && names.includes('my-llama:latest'), 'copy and create are listed')
  await admin.delete({ model: 'llama-copy' })
  // The pool's re-discovery follows the delete, so look the delete itself up.
  const deleted = o.requests.filter((r) => r.path === '/api/delete').at(-1)!
  t.strictSame(deleted, { ...deleted, method: 'DELETE', body: { name: 'llama-copy' } })
  t.notOk((await admin.list()).models.some((m) => m.name === 'llama-copy:latest'), 'gone from the listing after delete')
  const ghost = await raw(gw, 'DELETE', '/api/delete', { model: 'ghost' }, 'admin')
  t.equal(ghost.status, 404)
  t.strictSame(ghost.json, { error: "model 'ghost' not found" })
})

t.test('with several Ollama backends management needs ?backend=NAME', async (t) => {
  const a = await OllamaEmulator.start()
  const b = await OllamaEmulator.start({ models: ['mistral:7b'] })
  const x = await XinferenceEmulator.start()
  t.teardown(() => Promise.all([a.close(), b.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'a', type: 'ollama', url: a.url }, { name: 'b', type: 'ollama', url: b.url }, { name: 'xi', type: 'xinference', url: x.url }])
  const pull = { model: 'phi3', stream: false }
  const ambiguous = await raw(gw, 'POST', '/api/pull', pull, 'admin')
  t.equal(ambiguous.status, 400)
  t.match(ambiguous.json, { error: /\?backend=.*one of: a, b\)$/ }, 'the choices are named')
  t.equal(typeof ambiguous.json.error, 'string')
  const chosen = await raw(gw, 'POST', '/api/pull?backend=b', pull, 'admin')
  t.equal(chosen.status, 200)
  t.strictSame(chosen.json, { status: 'success' })
  t.equal(b.requests.filter((r) => r.path === '/api/pull').length, 1)
  t.equal(a.requests.filter((r) => r.path === '/api/pull').length, 0, 'only the named backend pulled')
  t.ok((await ollamaOf(gw, 'admin').list()).models.some((m) => m.name === 'phi3:latest'), 'the pool lists the pulled model as soon as the pull answered')
  const notOllama = await raw(gw, 'POST', '/api/pull?backend=xi', pull, 'admin')
  t.equal(notOllama.status, 400)
  t.equal(typeof notOllama.json.error, 'string')
  const nobody = await raw(gw, 'POST', '/api/pull?backend=zz', pull, 'admin')
  t.equal(nobody.status, 404)
  t.strictSame(nobody.json, { error: "no backend named 'zz'" })
})
