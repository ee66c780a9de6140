// Xinference model management for admins through ChatGate: launch, describe, progress and
// terminate on the Xinference backend (the emulator), the new model routable at once and gone at
// once; refusals in Xinference's own `{"detail"}` form.
import t, { type Test } from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { call, type Answer } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

interface Setup { gw: Gateway, x: XinferenceEmulator, x2: XinferenceEmulator, admin: Record<string, string>, user: Record<string, string> }

async function setup (t: Test, twoXinference = false): Promise<Setup> {
  const x = await XinferenceEmulator.start({ apiKey: 'backend-secret' })
  const x2 = await XinferenceEmulator.start({ models: [{ uid: 'other', name: 'other' }] })
  const o = await OllamaEmulator.start()
  t.teardown(() => Promise.all([x.close(), x2.close(), o.close()]))
  const gw = await startGateway(t, [
    { name: 'xin', type: 'xinference', url: x.url, apiKey: 'backend-secret' },
    ...(twoXinference ? [{ name: 'xin2', type: 'xinference' as const, url: x2.url }] : []),
    { name: 'oll', type: 'ollama', url: o.url },
  ])
  return { gw, x, x2, admin: gw.auth('admin'), user: gw.auth('user') }
}

const LAUNCH = { model_uid: 'my-llama', model_name: 'llama-3.1-instruct', model_engine: 'llama.cpp', model_type: 'LLM', model_format: 'ggufv2', model_size_in_billions: 8, quantization: 'Q4_K_M', replica: 1 }
const chat = (s: Setup, model: string): Promise<Answer> =>
  call(s.gw, 'POST', '/v1/chat/completions', s.user, { model, messages: [{ role: 'user', content: 'Hi!' }] })

t.test('an admin launches a model, which is routable at once, describes it, watches progress, and terminates it', async (t) => {
  const s = await setup(t)
  t.same(await call(s.gw, 'GET', '/v1/cluster/auth'), { status: 200, json: { auth: true } }, 'asked without credentials, as the Xinference client does first')

  const launched = await call(s.gw, 'POST', '/v1/models', s.admin, LAUNCH)
  t.same(launched, { status: 200, json: { model_uid: 'my-llama' } })
  const sent = s.x.requests.find((r) => r.method === 'POST' && r.path === '/v1/models')!
  t.same(sent.body, LAUNCH, 'the launch body reaches Xinference as sent')
  t.equal(sent.headers.authorization, 'Bearer backend-secret', 'with the backend\'s own key, not the caller\'s')

  const listed = await call(s.gw, 'GET', '/v1/models', s.user)
  t.ok(listed.json.data.some((m: { id: string }) => m.id === 'my-llama'), 'listed at once')
  t.equal((await chat(s, 'my-llama')).status, 200, 'and chats at once')

  const described = await call(s.gw, 'GET', '/v1/models/my-llama', s.user)
  t.match(described.json, { id: 'my-llama', object: 'model', owned_by: 'xin', model_type: 'LLM', model_ability: ['generate', 'chat'], model_name: 'llama-3.1-instruct' })
  t.notOk('address' in described.json, 'the worker\'s internal address is not shown')
  const onBackend = await call(s.gw, 'GET', '/v1/models/my-llama?backend=xin', s.admin)
  t.match(onBackend.json, { model_type: 'LLM', address: String }, 'with ?backend= an admin sees the backend\'s own description')
  t.equal((await call(s.gw, 'GET', '/v1/models/my-llama?backend=xin', s.user)).status, 403)
  t.same((await call(s.gw, 'GET', '/v1/models/my-llama/progress', s.admin)).json, { progress: 1.0 })

  const again = await call(s.gw, 'POST', '/v1/models', s.admin, LAUNCH)
  t.same(again, { status: 400, json: { detail: 'Model is already in the model list, uid: my-llama' } }, 'Xinference\'s refusal as it is')

  const terminated = await call(s.gw, 'DELETE', '/v1/models/my-llama', s.admin)
  t.same(terminated, { status: 200, json: null })
  const after = await call(s.gw, 'GET', '/v1/models', s.user)
  t.notOk(after.json.data.some((m: { id: string }) => m.id === 'my-llama'), 'gone from the listing at once')
  t.equal((await chat(s, 'my-llama')).status, 404, 'and no longer routable')
  t.same(await call(s.gw, 'DELETE', '/v1/models/my-llama', s.admin), { status: 400, json: { detail: 'Model not found in the model list, uid: my-llama' } })
})

t.test('an Ollama body with nulls for unset fields (LangChain\'s ChatOllama, BioChatter) is translated for Xinference', async (t) => {
  const s = await setup(t)
  const body = {
    model: 'qwen2.5-instruct', format: null, system: null, template: null, keep_alive: null, raw: null, stream: null, tools: null,
    options: { temperature: 0.0, num_predict: null, stop: null, top_k: null, mirostat: null },
    messages: [{ role: 'user', content: 'Hi!', images: [], tool_calls: null }],
  }
  const res = await call(s.gw, 'POST', '/api/chat', s.user, { ...body, stream: false })
  t.equal(res.status, 200)
  t.match(res.json, { model: 'qwen2.5-instruct', message: { role: 'assistant', content: String }, done: true })
  const sent = s.x.requests.find((r) => r.path === '/v1/chat/completions')!.body
  t.notOk('response_format' in sent || 'max_tokens' in sent || 'stop' in sent, 'the nulls mean "not set"')
  t.equal(sent.temperature, 0)
})

t.test('refused in Xinference\'s form: users, no credentials, bad bodies, unknown or wrong backends; nothing launched', async (t) => {
  const s = await setup(t, true)
  const launches = (): number => [s.x, s.x2].flatMap((x) => x.requests).filter((r) => r.method === 'POST' && r.path === '/v1/models').length
  t.same(await call(s.gw, 'POST', '/v1/models?backend=xin', s.user, LAUNCH), { status: 403, json: { detail: 'managing Xinference models is for admins only' } })
  t.same(await call(s.gw, 'DELETE', '/v1/models/qwen2.5-instruct?backend=xin', s.user), { status: 403, json: { detail: 'managing Xinference models is for admins only' } })
  t.match(await call(s.gw, 'POST', '/v1/models?backend=xin', {}, LAUNCH), { status: 401, json: { detail: /missing credentials/ } })
  t.match(await call(s.gw, 'POST', '/v1/models', s.admin, LAUNCH), { status: 400, json: { detail: 'name the Xinference backend with ?backend=<name> (one of: xin, xin2)' } })
  t.match(await call(s.gw, 'POST', '/v1/models?backend=gpu9', s.admin, LAUNCH), { status: 404, json: { detail: "no backend named 'gpu9'" } })
  t.match(await call(s.gw, 'POST', '/v1/models?backend=oll', s.admin, LAUNCH), { status: 400, json: { detail: "backend 'oll' is not an Xinference backend" } })
  t.match(await call(s.gw, 'POST', '/v1/models?backend=xin', s.admin, ['not', 'an', 'object']), { status: 400, json: { detail: /invalid request/ } })
  t.equal(launches(), 0, 'no launch reached a backend')
  // And the same rule for Ollama's model management.
  t.match(await call(s.gw, 'POST', '/api/pull?backend=xin', s.admin, { model: 'llama3.2' }), { status: 400, json: { error: "backend 'xin' is not an Ollama backend" } })

  await s.x2.close()
  t.match(await call(s.gw, 'GET', '/v1/models/other/progress?backend=xin2', s.admin), { status: 502, json: { detail: 'backend xin2 is unreachable' } })
})

t.test('with no Xinference backend, management says so', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'oll', type: 'ollama', url: o.url }])
  t.same(await call(gw, 'POST', '/v1/models', gw.auth('admin'), LAUNCH), { status: 400, json: { detail: 'no Xinference backend is configured' } })
  const x = await XinferenceEmulator.start()
  t.teardown(() => x.close())
  const two = await startGateway(t, [{ name: 'x', type: 'xinference', url: x.url }, { name: 'o1', type: 'ollama', url: o.url }, { name: 'o2', type: 'ollama', url: o.url }])
  t.match(await call(two, 'POST', '/api/pull', two.auth('admin'), { model: 'llama3.2' }), { status: 400, json: { error: 'name the Ollama backend with ?backend=<name> (one of: o1, o2)' } })
})
