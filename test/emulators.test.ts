// Proves the backend emulators' wire format byte for byte (see
// /work/shared/reference/backend-and-client-contracts.md sections 1–3).
import http from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; text: string }

async function call(url: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  const res = await request(url, { method, body: payload, headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers } })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** Opens a streamed request with node:http and resolves with the first body bytes. */
function openStream(url: string, body: unknown): Promise<{ req: http.ClientRequest; first: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', (d: Buffer) => resolve({ req, first: d.toString() }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/** Sends a request and leaves it pending (nothing is awaited). */
function fire(url: string, body: unknown): http.ClientRequest {
  const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } })
  req.on('error', () => {})
  req.end(JSON.stringify(body))
  return req
}

const TS = /"created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"/g
const normTime = (s: string): string => s.replace(TS, '"created_at":"T"')
const chat = { model: 'llama3.2', messages: [{ role: 'user', content: 'why is the sky blue' }] }
const ndjsonLine = (content: string): string =>
  `{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":${JSON.stringify(content)}},"done":false}\n`
const weatherTool = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]

t.test('ollama: native routes and NDJSON', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())

  let r = await call(o.url + '/')
  t.same([r.status, r.headers['content-type'], r.text], [200, 'text/plain; charset=utf-8', 'Ollama is running'])
  r = await call(o.url + '/', 'HEAD')
  t.same([r.status, r.text], [200, ''])
  r = await call(o.url + '/api/version')
  t.same([r.status, r.headers['content-type'], r.text], [200, 'application/json; charset=utf-8', '{"version":"0.12.0"}'])
  r = await call(o.url + '/api/tags')
  t.match(r.text, /^\{"models":\[\{"name":"llama3\.2:latest","model":"llama3\.2:latest","modified_at":"2025-06-01T12:00:00Z","size":2019393189,"digest":"[0-9a-f]{64}","details":\{"parent_model":"","format":"gguf","family":"llama","families":\["llama"\],"parameter_size":"3\.2B","quantization_level":"Q4_K_M"\}\}\]\}$/)
  t.equal((await call(o.url + '/api/ps')).text, '{"models":[]}')

  // streamed chat (stream defaults to true), cold load
  r = await call(o.url + '/api/chat', 'POST', chat)
  t.equal(r.status, 200)
  t.equal(r.headers['content-type'], 'application/x-ndjson')
  t.equal(r.headers['transfer-encoding'], 'chunked')
  t.match(r.text, TS)
  t.equal(normTime(r.text), ['Hello', ' from', ' llama3.2', '!'].map(ndjsonLine).join('') +
    '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1545000000,"load_duration":1500000000,"prompt_eval_count":5,"prompt_eval_duration":5000000,"eval_count":4,"eval_duration":40000000}\n')
  t.same(o.loaded, ['llama3.2:latest'])
  r = await call(o.url + '/api/ps')
  t.match(r.text, /^\{"models":\[\{"name":"llama3\.2:latest","model":"llama3\.2:latest","size":2019393189,"digest":"[0-9a-f]{64}","details":\{.*\},"expires_at":"[^"]+Z","size_vram":2019393189,"context_length":4096\}\]\}$/)

  // warm, non-streamed
  r = await call(o.url + '/api/chat', 'POST', { ...chat, stream: false })
  t.equal(r.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(normTime(r.text), '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":"Hello from llama3.2!"},"done":true,"done_reason":"stop","total_duration":46000000,"load_duration":1000000,"prompt_eval_count":5,"prompt_eval_duration":5000000,"eval_count":4,"eval_duration":40000000}')

  // thinking, images, replyTokens, num_predict
  o.mode = { replyTokens: ['A', 'B', 'C'] }
  r = await call(o.url + '/api/chat', 'POST', { ...chat, think: true, options: { num_predict: 2 }, messages: [{ role: 'user', content: 'look', images: ['aGk='] }] })
  t.equal(normTime(r.text),
    '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":"","thinking":"Let me think."},"done":false}\n' +
    ndjsonLine('A') + ndjsonLine(' image') +
    '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":22000000,"load_duration":1000000,"prompt_eval_count":1,"prompt_eval_duration":1000000,"eval_count":2,"eval_duration":20000000}\n')
  t.same(o.requests.at(-1)?.body.messages[0].images, ['aGk='])
  o.mode = {}

  // tool call: arguments are an object
  r = await call(o.url + '/api/chat', 'POST', { ...chat, tools: weatherTool, messages: [{ role: 'user', content: 'What is the weather in Tokyo?' }] })
  const lines = normTime(r.text).split('\n')
  t.equal(lines[0], '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}')
  t.match(lines[1], /^\{"model":"llama3\.2","created_at":"T","message":\{"role":"assistant","content":""\},"done":true,"done_reason":"stop",/)
  t.same(lines.length, 3)

  // generate: response field, context on the final chunk
  r = await call(o.url + '/api/generate', 'POST', { model: 'llama3.2:latest', prompt: 'hi there', system: 'be brief', stream: true })
  t.equal(normTime(r.text),
    ['Hello', ' from', ' llama3.2:latest', '!'].map((s) => `{"model":"llama3.2:latest","created_at":"T","response":${JSON.stringify(s)},"done":false}\n`).join('') +
    '{"model":"llama3.2:latest","created_at":"T","response":"","done":true,"done_reason":"stop","context":[1,2,3,4,5,6,7,8],"total_duration":45000000,"load_duration":1000000,"prompt_eval_count":4,"prompt_eval_duration":4000000,"eval_count":4,"eval_duration":40000000}\n')
  r = await call(o.url + '/api/generate', 'POST', { model: 'llama3.2', prompt: '' })
  t.equal(normTime(r.text), '{"model":"llama3.2","created_at":"T","response":"","done":true,"done_reason":"load"}')
  r = await call(o.url + '/api/chat', 'POST', { model: 'llama3.2', messages: [], keep_alive: 0 })
  t.equal(normTime(r.text), '{"model":"llama3.2","created_at":"T","message":{"role":"assistant","content":""},"done":true,"done_reason":"unload"}')
  t.same(o.loaded, [])

  // embeddings
  r = await call(o.url + '/api/embed', 'POST', { model: 'llama3.2', input: ['a b', 'xyz'] })
  t.equal(r.text, '{"model":"llama3.2","embeddings":[[3,2,0.5,-0.5],[3,1,0.5,-0.5]],"total_duration":1505000000,"load_duration":1500000000,"prompt_eval_count":3}')
  r = await call(o.url + '/api/embeddings', 'POST', { model: 'llama3.2', prompt: 'hello world' })
  t.equal(r.text, '{"embedding":[11,2,0.5,-0.5]}')
})

t.test('ollama: errors and modes', async (t) => {
  const o = await OllamaEmulator.start({ embeddingModels: ['all-minilm'] })
  t.teardown(() => o.close())
  const expectError = async (path: string, body: unknown, status: number, text: string, method = 'POST'): Promise<void> => {
    const r = await call(o.url + path, method, body)
    t.same([r.status, r.headers['content-type'], r.text], [status, 'application/json; charset=utf-8', text], `${path} ${text}`)
  }
  await expectError('/api/chat', { ...chat, model: 'foo' }, 404, `{"error":"model 'foo' not found"}`)
  await expectError('/api/chat', '', 400, '{"error":"missing request body"}')
  await expectError('/api/generate', 'hello', 400, `{"error":"invalid character 'h' looking for beginning of value"}`)
  await expectError('/api/chat', { ...chat, model: 'all-minilm' }, 400, '{"error":"\\"all-minilm\\" does not support chat"}')
  await expectError('/api/show', { model: 'foo' }, 404, `{"error":"model 'foo' not found"}`)
  o.mode = { busy: true }
  await expectError('/api/chat', chat, 503, '{"error":"server busy, please try again.  maximum pending requests exceeded"}')
  await expectError('/api/embed', { model: 'all-minilm', input: 'x' }, 503, '{"error":"server busy, please try again.  maximum pending requests exceeded"}')
  o.mode = { httpError: { status: 500, message: 'boom <&>' } }
  await expectError('/api/generate', { model: 'llama3.2', prompt: 'x' }, 500, '{"error":"boom \\u003c\\u0026\\u003e"}')

  // mid-stream error: status 200, one more NDJSON line, then end
  o.mode = { failAfterChunks: 2 }
  let r = await call(o.url + '/api/chat', 'POST', chat)
  t.equal(r.status, 200)
  t.equal(normTime(r.text), ndjsonLine('Hello') + ndjsonLine(' from') + '{"error":"an error was encountered while running the model"}\n')
  o.mode = { failAfterChunks: 0 }
  r = await call(o.url + '/api/chat', 'POST', chat)
  t.same([r.status, r.headers['content-type'], r.text], [500, 'application/json', '{"error":"an error was encountered while running the model"}'])
  o.mode = { failAfterChunks: 1 }
  await expectError('/api/chat', { ...chat, stream: false }, 500, '{"error":"an error was encountered while running the model"}')

  // abrupt drop: body fails, not counted as an abort
  o.mode = { dropAfterChunks: 1 }
  await t.rejects(call(o.url + '/api/chat', 'POST', chat))
  t.equal(o.aborts.length, 0)

  // holdOpen: client abort is recorded, timers are cleared
  o.mode = { holdOpen: true }
  const s1 = await openStream(o.url + '/api/chat', chat)
  t.equal(normTime(s1.first), ndjsonLine('Hello'))
  t.equal(o.inFlight, 1)
  s1.req.on('error', () => {})
  s1.req.destroy()
  await o.waitForAborts(1)
  t.equal(o.aborts[0]?.path, '/api/chat')
  t.equal(o.inFlight, 0)

  // abort during the model-load delay; concurrency accounting
  o.mode = { firstTokenDelayMs: 60_000 }
  const before = o.requests.filter((q) => q.path === '/api/chat').length
  const pending = [fire(o.url + '/api/chat', chat), fire(o.url + '/api/chat', chat)]
  await o.waitForRequests(before + 2, '/api/chat')
  t.equal(o.inFlight, 2)
  t.ok(o.maxInFlight >= 2)
  for (const p of pending) p.destroy()
  await o.waitForAborts(3)
  t.equal(o.inFlight, 0)
  o.mode = {}

  // delays change timing only, never bytes
  o.mode = { firstTokenDelayMs: 10, chunkDelayMs: 5 }
  r = await call(o.url + '/api/chat', 'POST', { ...chat, options: { num_predict: 2 } })
  t.equal(normTime(r.text).split('\n').slice(0, 2).join('\n') + '\n', ndjsonLine('Hello') + ndjsonLine(' from'))
  o.mode = {}

  // model management
  r = await call(o.url + '/api/pull', 'POST', { name: 'qwen3' })
  t.equal(r.headers['content-type'], 'application/x-ndjson')
  const statuses = r.text.trimEnd().split('\n').map((l) => JSON.parse(l).status)
  t.equal(statuses[0], 'pulling manifest')
  t.equal(r.text.split('\n').at(-2), '{"status":"success"}')
  t.ok(o.models.includes('qwen3:latest'))
  r = await call(o.url + '/api/delete', 'DELETE', { model: 'qwen3' })
  t.same([r.status, r.text, r.headers['content-type']], [200, '', undefined])
  t.notOk(o.models.includes('qwen3:latest'))
  await expectError('/api/delete', { model: 'qwen3' }, 404, `{"error":"model 'qwen3' not found"}`, 'DELETE')
  await expectError('/api/copy', { source: 'nope', destination: 'x' }, 404, '{"error":"model \\"nope\\" not found"}')
  t.equal((await call(o.url + '/api/copy', 'POST', { source: 'llama3.2', destination: 'mine' })).status, 200)
  t.ok(o.models.includes('mine:latest'))
  r = await call(o.url + '/api/create', 'POST', { model: 'custom', from: 'llama3.2', stream: false })
  t.equal(r.text, '{"status":"success"}')
  t.ok(o.models.includes('custom:latest'))
})

t.test('ollama: OpenAI-compatible /v1', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const body = { ...chat, stream: true }
  let r = await call(o.url + '/v1/chat/completions', 'POST', body)
  t.equal(r.headers['content-type'], 'text/event-stream')
  const created = /"created":(\d+)/.exec(r.text)?.[1]
  const head = `{"id":"chatcmpl-0","object":"chat.completion.chunk","created":${created},"model":"llama3.2","system_fingerprint":"fp_ollama","choices":`
  const frame = (choices: string, extra = ''): string => `data: ${head}${choices}${extra}}\n\n`
  t.equal(r.text,
    frame('[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]') +
    frame('[{"index":0,"delta":{"content":" from"},"finish_reason":null}]') +
    frame('[{"index":0,"delta":{"content":" llama3.2"},"finish_reason":null}]') +
    frame('[{"index":0,"delta":{"content":"!"},"finish_reason":null}]') +
    frame('[{"index":0,"delta":{},"finish_reason":"stop"}]') +
    'data: [DONE]\n\n')

  r = await call(o.url + '/v1/chat/completions', 'POST', { ...body, stream_options: { include_usage: true }, tools: weatherTool, messages: [{ role: 'user', content: 'weather in Tokyo' }] })
  const c2 = /"created":(\d+)/.exec(r.text)?.[1]
  const head2 = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":${c2},"model":"llama3.2","system_fingerprint":"fp_ollama","choices":`
  t.equal(r.text,
    `data: ${head2}[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Tokyo\\"}"}}]},"finish_reason":null}]}\n\n` +
    `data: ${head2}[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n` +
    `data: ${head2}[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\n` +
    'data: [DONE]\n\n')

  r = await call(o.url + '/v1/chat/completions', 'POST', { ...chat, reasoning_effort: 'low' })
  t.equal(r.headers['content-type'], 'application/json')
  t.match(r.text, /^\{"id":"chatcmpl-2","object":"chat\.completion","created":\d+,"model":"llama3\.2","system_fingerprint":"fp_ollama","choices":\[\{"index":0,"message":\{"role":"assistant","content":"Hello from llama3\.2!","reasoning":"Let me think\."\},"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9\}\}\n$/)

  // mid-stream failure: an empty chunk with model "" and no [DONE]
  o.mode = { failAfterChunks: 1 }
  r = await call(o.url + '/v1/chat/completions', 'POST', body)
  const c3 = /"created":(\d+)/.exec(r.text)?.[1]
  t.equal(r.text,
    `data: {"id":"chatcmpl-3","object":"chat.completion.chunk","created":${c3},"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}\n\n` +
    `data: {"id":"chatcmpl-3","object":"chat.completion.chunk","created":${c3},"model":"","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}\n\n`)
  o.mode = { busy: true }
  r = await call(o.url + '/v1/chat/completions', 'POST', body)
  t.same([r.status, r.text], [503, '{"error":{"message":"server busy, please try again.  maximum pending requests exceeded","type":"api_error","param":null,"code":null}}\n'])
  o.mode = {}
  r = await call(o.url + '/v1/chat/completions', 'POST', { ...body, model: 'x' })
  t.same([r.status, r.text], [404, `{"error":{"message":"model 'x' not found","type":"not_found_error","param":null,"code":null}}\n`])
  r = await call(o.url + '/v1/chat/completions', 'POST', { ...body, messages: [] })
  t.same([r.status, r.text], [400, `{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":null,"code":null}}`])

  r = await call(o.url + '/v1/models')
  t.equal(r.text, '{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":1748779200,"owned_by":"library"}]}\n')
  r = await call(o.url + '/v1/embeddings', 'POST', { model: 'llama3.2', input: 'hi you' })
  t.equal(r.text, '{"object":"list","data":[{"object":"embedding","embedding":[6,2,0.5,-0.5],"index":0}],"model":"llama3.2","usage":{"prompt_tokens":2,"total_tokens":2}}\n')
  r = await call(o.url + '/v1/embeddings', 'POST', { model: 'llama3.2', input: 'hi', encoding_format: 'base64' })
  t.equal(JSON.parse(r.text).data[0].embedding, Buffer.from(new Float32Array([2, 1, 0.5, -0.5]).buffer).toString('base64'))
})

const xchat = { model: 'qwen2.5-instruct', messages: [{ role: 'user', content: 'Say hi' }], stream: true }
const xsse = (id: string, created: string, choices: string, usage = ''): string =>
  `data: {"id": "${id}", "model": "qwen2.5-instruct", "created": ${created}, "object": "chat.completion.chunk", "choices": ${choices}${usage}}\r\n\r\n`
const idOf = (text: string): [string, string] => [/"id": "([^"]+)"/.exec(text)?.[1] ?? '', /"created": (\d+)/.exec(text)?.[1] ?? '']

t.test('xinference: SSE chat', async (t) => {
  const x = await XinferenceEmulator.start()
  t.teardown(() => x.close())
  let r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, stream_options: { include_usage: true } })
  t.equal(r.status, 200)
  t.equal(r.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(r.headers['x-accel-buffering'], 'no')
  t.equal(r.headers['cache-control'], 'no-store')
  let [id, created] = idOf(r.text)
  t.match(id, /^chatcmpl-[0-9a-f-]{36}$/)
  const content = (s: string): string => xsse(id, created, `[{"index": 0, "delta": {"content": "${s}"}, "logprobs": null, "finish_reason": null}]`, ', "usage": null')
  const usage = '{"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}'
  t.equal(r.text,
    xsse(id, created, '[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]') +
    ['Hello', ' from', ' qwen2.5-instruct', '!'].map(content).join('') +
    xsse(id, created, '[{"index": 0, "delta": {"content": ""}, "logprobs": null, "finish_reason": "stop"}]', `, "usage": ${usage}`) +
    xsse(id, created, '[]', `, "usage": ${usage}`) +
    'data: [DONE]\r\n\r\n')

  // without include_usage: no choices:[] chunk
  r = await call(x.url + '/v1/chat/completions', 'POST', xchat)
  t.notMatch(r.text, '"choices": []')
  t.match(r.text, `"finish_reason": "stop"}], "usage": ${usage}}\r\n\r\ndata: [DONE]\r\n\r\n`)

  // reasoning in delta.reasoning_content
  r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, chat_template_kwargs: { enable_thinking: true } })
  ;[id, created] = idOf(r.text)
  const frames = r.text.split('\r\n\r\n')
  t.equal(frames[0] + '\r\n\r\n', xsse(id, created, '[{"index": 0, "delta": {"role": "assistant", "content": null, "reasoning_content": ""}, "finish_reason": null}]'))
  t.equal(frames[1] + '\r\n\r\n', xsse(id, created, '[{"index": 0, "delta": {"reasoning_content": "Let me think.", "content": null}, "logprobs": null, "finish_reason": null}]', ', "usage": null'))
  t.equal(frames[2] + '\r\n\r\n', xsse(id, created, '[{"index": 0, "delta": {"reasoning_content": null, "content": "Hello"}, "logprobs": null, "finish_reason": null}]', ', "usage": null'))

  // tool calls: two deltas, finish_reason tool_calls
  r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, tools: weatherTool, messages: [{ role: 'user', content: 'weather in Tokyo?' }] })
  ;[id, created] = idOf(r.text)
  const call1 = /"id": "(call_[0-9a-f-]{36})"/.exec(r.text)?.[1]
  const tool = (delta: string, finish: string): string =>
    `data: {"id": "${id}", "model": "qwen2.5-instruct", "object": "chat.completion.chunk", "created": ${created}, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "tool_calls": ${delta}}, "logprobs": null, "finish_reason": ${finish}}], "usage": null}\r\n\r\n`
  t.equal(r.text,
    xsse(id, created, '[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]') +
    tool(`[{"index": 0, "id": "${call1}", "type": "function", "function": {"arguments": "", "name": "get_weather"}}]`, 'null') +
    tool(`[{"index": 0, "id": "${call1}", "type": "function", "function": {"arguments": "{\\"city\\": \\"Tokyo\\"}"}}]`, 'null') +
    tool('[]', '"tool_calls"') +
    'data: [DONE]\r\n\r\n')

  // non-streamed
  r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, stream: false })
  t.equal(r.headers['content-type'], 'application/json')
  t.match(r.text, /^\{"id":"chatcmpl-[0-9a-f-]+","object":"chat\.completion","created":\d+,"model":"qwen2\.5-instruct","choices":\[\{"index":0,"message":\{"role":"assistant","content":"Hello from qwen2\.5-instruct!"\},"logprobs":null,"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6\}\}$/)
  r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, stream: false, tools: weatherTool, messages: [{ role: 'user', content: 'weather?' }] })
  const msg = JSON.parse(r.text).choices[0]
  t.same(msg.message.tool_calls[0].function, { name: 'get_weather', arguments: '{"city": "Tokyo"}' })
  t.equal(msg.finish_reason, 'tool_calls')
  // images arrive
  r = await call(x.url + '/v1/chat/completions', 'POST', { ...xchat, stream: false, messages: [{ role: 'user', content: [{ type: 'text', text: 'what' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,aGk=' } }] }] })
  t.equal(JSON.parse(r.text).choices[0].message.content, 'Hello image qwen2.5-instruct!')
})

t.test('xinference: errors, modes, management, auth', async (t) => {
  const x = await XinferenceEmulator.start({ usageOnFinishChunk: false })
  t.teardown(() => x.close())
  const expectDetail = async (path: string, body: unknown, status: number, detail: string, method = 'POST'): Promise<Reply> => {
    const r = await call(x.url + path, method, body)
    t.same([r.status, r.headers['content-type'], r.text], [status, 'application/json', JSON.stringify({ detail })], `${path} ${detail}`)
    return r
  }
  let r = await call(x.url + '/v1/chat/completions', 'POST', xchat)
  t.match(r.text, '"finish_reason": "stop"}], "usage": null}\r\n\r\ndata: [DONE]\r\n\r\n')
  await expectDetail('/v1/chat/completions', { ...xchat, model: 'foo' }, 404, 'Model not found in the model list, uid: foo')
  await expectDetail('/v1/chat/completions', { ...xchat, messages: [] }, 400, 'Invalid input. Please specify the prompt.')
  r = await call(x.url + '/v1/chat/completions', 'POST', 'not json')
  t.same([r.status, r.text], [500, 'Internal Server Error: Expecting value: line 1 column 1 (char 0)'])
  x.mode = { busy: true }
  r = await expectDetail('/v1/chat/completions', xchat, 503, 'Model is loading, please retry later: Model qwen2.5-instruct is loading, please retry later')
  t.equal(r.headers['retry-after'], '30')
  x.mode = { rateLimited: true }
  await expectDetail('/v1/chat/completions', { ...xchat, stream: false }, 429, 'Rate limit reached for the model. Request limit 1 for the model: qwen2.5-instruct')
  r = await call(x.url + '/v1/chat/completions', 'POST', xchat)
  t.same([r.status, r.text], [200, 'data: {"error": "429: Rate limit reached for the model. Request limit 1 for the model: qwen2.5-instruct"}\r\n\r\n'])
  x.mode = { httpError: { status: 500, message: 'engine died' } }
  await expectDetail('/v1/embeddings', { model: 'qwen2.5-instruct', input: 'x' }, 500, 'engine died')

  // mid-stream error: no [DONE]
  x.mode = { failAfterChunks: 1 }
  r = await call(x.url + '/v1/chat/completions', 'POST', xchat)
  const [id, created] = idOf(r.text)
  t.equal(r.text,
    xsse(id, created, '[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]') +
    xsse(id, created, '[{"index": 0, "delta": {"content": "Hello"}, "logprobs": null, "finish_reason": null}]', ', "usage": null') +
    'data: {"error": "CUDA error: out of memory"}\r\n\r\n')
  await expectDetail('/v1/chat/completions', { ...xchat, stream: false }, 500, 'CUDA error: out of memory')

  // holdOpen + abort; drop
  x.mode = { holdOpen: true }
  const s = await openStream(x.url + '/v1/chat/completions', xchat)
  t.match(s.first, /^data: \{"id": "chatcmpl-/)
  s.req.on('error', () => {})
  s.req.destroy()
  await x.waitForAborts(1)
  t.equal(x.aborts[0]?.path, '/v1/chat/completions')
  x.mode = { dropAfterChunks: 2 }
  await t.rejects(call(x.url + '/v1/chat/completions', 'POST', xchat))
  t.equal(x.aborts.length, 1)
  x.mode = {}

  // management
  r = await call(x.url + '/v1/models')
  t.equal(r.text, '{"object":"list","data":[{"id":"qwen2.5-instruct","object":"model","created":0,"owned_by":"xinference","model_type":"LLM","model_name":"qwen2.5-instruct","model_family":"qwen2.5-instruct","model_ability":["generate","chat"],"model_format":"pytorch","model_size_in_billions":"0_5","quantization":"none","context_length":32768,"address":"127.0.0.1:30001","accelerators":["0"],"model_engine":"vLLM","replica":1}]}')
  r = await call(x.url + '/v1/models', 'POST', { model_name: 'bge-m3', model_type: 'embedding', model_uid: 'emb' })
  t.same([r.status, r.text], [200, '{"model_uid":"emb"}'])
  t.equal((await call(x.url + '/v1/models/emb/progress')).text, '{"progress":1.0}')
  t.equal(JSON.parse((await call(x.url + '/v1/models/emb')).text).model_type, 'embedding')
  r = await call(x.url + '/v1/embeddings', 'POST', { model: 'emb', input: ['a b', 'c'] })
  t.equal(r.text, '{"object":"list","model":"emb","model_replica":"emb-rep0","data":[{"index":0,"object":"embedding","embedding":[3.0,2.0,0.5,-0.5]},{"index":1,"object":"embedding","embedding":[1.0,1.0,0.5,-0.5]}],"usage":{"prompt_tokens":3,"total_tokens":3}}')
  r = await call(x.url + '/v1/models/emb', 'DELETE')
  t.same([r.status, r.text], [200, 'null'])
  await expectDetail('/v1/models/emb', undefined, 400, 'Model not found in the model list, uid: emb', 'DELETE')
  t.same(x.models.map((m) => m.uid), ['qwen2.5-instruct'])
  t.equal((await call(x.url + '/v1/cluster/auth')).text, '{"auth":false}')

  const secured = await XinferenceEmulator.start({ apiKey: 'sk-test' })
  t.teardown(() => secured.close())
  r = await call(secured.url + '/v1/models')
  t.same([r.status, r.text, r.headers['www-authenticate']], [401, '{"detail":"Could not validate credentials"}', 'Bearer'])
  r = await call(secured.url + '/v1/models', 'GET', undefined, { authorization: 'Bearer sk-test' })
  t.equal(r.status, 200)
  t.equal((await call(secured.url + '/v1/cluster/auth')).text, '{"auth":true}')
})
