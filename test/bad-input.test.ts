import t from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway } from './helpers/gateway.js'

// Every malformed request gets a clear 4xx in the caller's protocol, never reaches a backend,
// and leaves the gateway serving.

t.test('bad input never reaches a backend', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { server: { bodyLimit: 4096 } })
  const seenBefore = ollama.requests.length // discovery probes

  const post = async (path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number, body: any }> => {
    const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...gw.auth(), ...headers }, body })
    return { status: res.status, body: await res.json() }
  }
  const openaiError = (status: number, pattern: RegExp) => async (res: Promise<{ status: number, body: any }>, name: string): Promise<void> => {
    const { status: got, body } = await res
    t.equal(got, status, `${name}: status`)
    t.match(body.error.message, pattern, `${name}: message`)
    t.type(body.error.type, 'string', `${name}: OpenAI error shape`)
  }
  const ollamaError = (status: number, pattern: RegExp) => async (res: Promise<{ status: number, body: any }>, name: string): Promise<void> => {
    const { status: got, body } = await res
    t.equal(got, status, `${name}: status`)
    t.type(body.error, 'string', `${name}: Ollama error shape`)
    t.match(body.error, pattern, `${name}: message`)
  }
  const chat = JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })

  await openaiError(400, /malformed JSON/)(post('/v1/chat/completions', '{"model":'), 'truncated JSON')
  await ollamaError(400, /malformed JSON/)(post('/api/chat', '{model: llama}'), 'not JSON')
  await openaiError(400, /missing request body/)(post('/v1/chat/completions', ''), 'empty body')
  await openaiError(400, /body\.model is required/)(post('/v1/chat/completions', '{"messages":[{"role":"user","content":"x"}]}'), 'no model')
  await openaiError(400, /body\.messages is required/)(post('/v1/chat/completions', '{"model":"llama3.2"}'), 'no messages')
  await openaiError(400, /messages/)(post('/v1/chat/completions', '{"model":"llama3.2","messages":[]}'), 'empty messages')
  await ollamaError(400, /body\.messages is required/)(post('/api/chat', '{"model":"llama3.2"}'), 'ollama: no messages')
  await ollamaError(400, /body\.model/)(post('/api/chat', '{"model":7,"messages":[]}'), 'ollama: model is a number')
  await openaiError(400, /body\.stream must be boolean/)(post('/v1/chat/completions', chat.replace('}]}', '}],"stream":"yes"}')), 'stream as string')
  await openaiError(400, /temperature/)(post('/v1/chat/completions', chat.replace('}]}', '}],"temperature":"hot"}')), 'temperature as string')
  await openaiError(400, /temperature/)(post('/v1/chat/completions', chat.replace('}]}', '}],"temperature":9}')), 'temperature out of range')
  await openaiError(400, /max_tokens/)(post('/v1/chat/completions', chat.replace('}]}', '}],"max_tokens":-1}')), 'negative max_tokens')
  await openaiError(400, /arguments must be a JSON string/)(post('/v1/chat/completions', JSON.stringify({
    model: 'llama3.2',
    messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{not json' } }] }],
  })), 'tool call arguments that are not JSON')
  await openaiError(400, /data: URL/)(post('/v1/chat/completions', JSON.stringify({
    model: 'llama3.2',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://169.254.169.254/latest/meta-data' } }] }],
  })), 'remote image URL (the gateway never fetches for a client)')
  await openaiError(400, /content part type "audio"/)(post('/v1/chat/completions', JSON.stringify({
    model: 'llama3.2', messages: [{ role: 'user', content: [{ type: 'audio' }] }],
  })), 'unknown content part')
  await openaiError(413, /bodyLimit/)(post('/v1/chat/completions', JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'x'.repeat(5000) }] })), 'body over the limit')
  await ollamaError(413, /bodyLimit/)(post('/api/chat', JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'x'.repeat(5000) }] })), 'ollama: body over the limit')
  await openaiError(400, /input/)(post('/v1/embeddings', '{"model":"llama3.2","input":{}}'), 'embedding input of the wrong type')
  await ollamaError(400, /prompt must not be empty/)(post('/api/embeddings', '{"model":"llama3.2","prompt":""}'), 'empty legacy embedding prompt')
  await ollamaError(400, /model is required/)(post('/api/show', '{}'), 'show without a model')
  await openaiError(404, /no route POST \/v1\/completions-typo/)(post('/v1/completions-typo', chat), 'unknown route')
  await ollamaError(404, /no route POST \/api\/nothing/)(post('/api/nothing', chat), 'ollama: unknown route')

  const chatPaths = new Set(['/api/chat', '/api/generate', '/api/embed', '/api/embeddings', '/api/show', '/v1/chat/completions'])
  t.same(ollama.requests.slice(seenBefore).filter((r) => chatPaths.has(r.path)), [], 'no bad request reached the backend')

  const curlStyle = await post('/api/chat', chat.replace('}]}', '}],"stream":false}'), { 'content-type': 'application/x-www-form-urlencoded' })
  t.equal(curlStyle.status, 200, '`curl -d` without a JSON content type works, as it does with Ollama')
  const ok = await post('/v1/chat/completions', chat)
  t.equal(ok.status, 200, 'the gateway still serves after all of that')
  t.equal(ok.body.choices[0].message.content, 'Hello from llama3.2:latest!')
})

t.test('JSON nested deeper than re-encoding can go: 400 wherever it must be re-encoded, never a backend marked down; passed on as sent otherwise', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { server: { bodyLimit: 1024 * 1024 } })
  const deep = '['.repeat(20_000) + ']'.repeat(20_000)
  const chats = (): number => ollama.requests.filter((r) => r.path === '/api/chat').length
  const before = chats()
  const translated = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","x":${deep}}}}]}`,
  })
  t.equal(translated.status, 400)
  t.match(await translated.json(), { error: { type: 'invalid_request_error', code: 'invalid_request', message: /nested too deeply/ } }, 'in the caller\'s protocol, not a 502')
  t.equal(chats(), before, 'nothing reached the backend')
  const passedOn = await fetch(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: `{"model":"llama3.2:latest","stream":false,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","x":${deep}}}}]}`,
  })
  t.equal(passedOn.status, 200, 'the same protocol: the text goes on as sent, the backend judges it')
  t.equal(chats(), before + 1)

  // Bodies that are re-encoded on their way (embeddings, model details): the caller's error, and
  // never taken for a failure of the backend, which would then be marked down for everyone.
  const post = async (path: string, body: string): Promise<{ status: number, body: any }> => {
    const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' }, body })
    return { status: res.status, body: await res.json() }
  }
  const seen = ollama.requests.length
  for (const [path, body] of [
    ['/api/embed', `{"model":"llama3.2","input":"hi","x":${deep}}`],
    ['/api/embeddings', `{"model":"llama3.2","prompt":"hi","x":${deep}}`],
    ['/api/show', `{"model":"llama3.2","x":${deep}}`],
  ] as const) {
    t.match(await post(path, body), { status: 400, body: { error: /nested too deeply/ } }, path)
  }
  t.equal(ollama.requests.length, seen, 'none reached the backend')
  t.match(await post('/api/embed', '{"model":"llama3.2","input":"hi"}'), { status: 200, body: { embeddings: [[2, 1, 0.5, -0.5]] } }, 'the backend still serves')
  t.equal(gw.app.gateway.pool.backends[0]!.isUp(), true, 'and was never marked down')
})
