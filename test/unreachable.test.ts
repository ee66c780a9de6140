import t from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway } from './helpers/gateway.js'

// Nothing listens on the discard port: a backend that cannot be asked what it serves.
const nowhere = { name: 'gpu-down', type: 'ollama' as const, url: 'http://127.0.0.1:9' }

t.test('a model missing while a backend is unreachable is 503 + Retry-After, not 404', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'gpu-up', type: 'ollama', url: ollama.url }, nowhere])
  const chat = async (path: string, model: string): Promise<Response> => fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: false, messages: [{ role: 'user', content: 'hi' }] }),
  })

  const served = await chat('/api/chat', 'llama3.2')
  t.equal(served.status, 200, 'a model on the reachable backend is served')
  await served.text()

  const openai = await chat('/v1/chat/completions', 'mistral')
  t.equal(openai.status, 503)
  t.ok(Number(openai.headers.get('retry-after')) >= 1)
  const body = await openai.json() as { error: { message: string, code: string } }
  t.match(body.error.message, /model 'mistral' is not on any reachable backend; unreachable: gpu-down \(/)
  t.equal(body.error.code, 'backend_unavailable')

  const ollamaSurface = await chat('/api/chat', 'mistral')
  t.equal(ollamaSurface.status, 503)
  t.match(await ollamaSurface.json(), { error: /unreachable: gpu-down/ })
})

t.test('with every backend reachable an unknown model is 404', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'gpu-up', type: 'ollama', url: ollama.url }])
  const res = await fetch(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mistral', messages: [{ role: 'user', content: 'hi' }] }),
  })
  t.equal(res.status, 404)
  t.same(await res.json(), { error: "model 'mistral' not found" })
})
