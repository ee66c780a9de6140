// The BioChatter Next server API: requests exactly as the Next server (biochatter-next 1.4.0)
// sends them — chunked, `?path=` query, `"stream": true`, empty or Bearer Authorization — through
// to the emulated Ollama and Xinference pool, answered as the frontend reads them (HTTP 200, code).
import t, { type Test } from 'tap'
import { request as httpRequest, createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { cli } from './helpers/cli.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

interface Answer { status: number, type: string | undefined, json: any }

/**
 * A POST the way the Next server's fetch sends it: chunked (no content-length), JSON. Node sends
 * a DELETE body only with a length.
 */
function nextPost (gw: Gateway, path: string, body: unknown, authorization = '', method = 'POST'): Promise<Answer> {
  const url = new URL(`${gw.url}${path}`)
  const json = JSON.stringify(body)
  const length = method === 'DELETE' ? { 'content-length': Buffer.byteLength(json) } : {}
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { 'content-type': 'application/json', authorization, 'x-requested-with': 'XMLHttpRequest', ...length } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], json: JSON.parse(text) }))
    })
    req.on('error', reject)
    // Two writes and no content-length: Node sends it chunked, as the Next server does.
    req.write(json.slice(0, 10))
    req.end(json.slice(10))
  })
}

const CHAT_PATH = '/biochatter/v1/chat/completions?path=v1&path=chat&path=completions'

/** The body the Next frontend builds (app/client/platforms/openai.ts). */
function nextChat (model: string, session: string, content = 'What is a gene?'): Record<string, unknown> {
  return {
    messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content }],
    stream: true,
    model,
    temperature: 0.0,
    presence_penalty: 0,
    frequency_penalty: 0,
    top_p: 1,
    session_id: session,
    useRAG: false,
    useKG: false,
    useAutoAgent: false,
    ragConfig: { connectionArgs: { host: 'local', port: '19530', user: null, password: null }, splitByChar: true, chunkSize: 1000, overlapSize: 0, resultNum: 3, docIdsWorkspace: [], selectedDocIds: [], description: 'x' },
    kgConfig: { connectionArgs: { host: 'local', port: '7687', user: 'neo4j', password: 'neo4j' }, resultNum: 3, description: 'x', useReflexion: false },
    oncokbConfig: { useOncoKB: false, description: 'x' },
  }
}

interface Setup { gw: Gateway, o: OllamaEmulator, x: XinferenceEmulator, key: (owner: string) => Promise<string> }

async function setup (t: Test, extra: Record<string, unknown> = {}): Promise<Setup> {
  const o = await OllamaEmulator.start({ models: ['llama3.1:latest'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'ol', type: 'ollama', url: o.url }, { name: 'xi', type: 'xinference', url: x.url }], {
    models: { aliases: { 'gpt-3.5-turbo': 'llama3.1' } },
    store: { usageFlushMs: 600_000 },
    ...extra,
  })
  await Promise.all(['alice', 'bob'].map((name) => gw.app.gateway.users.add({ name, password: `${name}-password` })))
  const key = async (owner: string): Promise<string> => {
    const res = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { ...gw.auth('admin'), 'content-type': 'application/json' }, body: JSON.stringify({ owner, name: `next-${Math.random()}` }) })
    return ((await res.json()) as { key: string }).key
  }
  return { gw, o, x, key }
}

t.test('a Next chat reaches the Ollama and the Xinference backend and comes back as the frontend reads it', async (t) => {
  const { gw, o, x, key } = await setup(t)
  const bearer = `Bearer ${await key('alice')}`
  const viaOllama = await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-1'), bearer)
  t.equal(viaOllama.status, 200)
  t.match(viaOllama.type, /^application\/json/, 'JSON, never SSE, though the body says stream: true')
  t.same(viaOllama.json, {
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from llama3.1:latest!' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
    contexts: [],
    code: 0,
  })
  const sent = o.requests.filter((r) => r.path === '/api/chat').at(-1)!
  t.same(sent.body.messages, [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is a gene?' }])
  t.equal(sent.body.stream, false)
  t.same(sent.body.options, { temperature: 0, top_p: 1, frequency_penalty: 0, presence_penalty: 0 })
  t.notOk('session_id' in sent.body || 'ragConfig' in sent.body, 'Next-only fields stay at the gateway')

  const viaXinference = await nextPost(gw, CHAT_PATH, nextChat('qwen2.5-instruct', 's-1'), bearer)
  t.equal(viaXinference.json.code, 0)
  t.equal(viaXinference.json.choices[0].message.content, 'Hello from qwen-a1b2!')
  t.same(viaXinference.json.contexts, [])
  t.equal(x.requests.filter((r) => r.path === '/v1/chat/completions').at(-1)!.body.model, 'qwen-a1b2', 'the Xinference model uid')

  // The Next summary and topic calls name gpt-3.5-turbo: an alias gives them a model of the pool.
  const summary = await nextPost(gw, CHAT_PATH, { ...nextChat('gpt-3.5-turbo', 's-1'), stream: false }, bearer)
  t.equal(summary.json.choices[0].message.content, 'Hello from llama3.1:latest!')
})

t.test('refusals come back as HTTP 200 with code 5100 and a message; a spent quota as 5103 with its limit', async (t) => {
  // A chat holds its prompt estimate (11) + 1024 (Next bodies set no max_tokens), then uses 13.
  const { gw, o, key } = await setup(t, { limits: { tokensPerDay: { user: 1040 } } })
  const chats = (): number => o.requests.filter((r) => r.path === '/api/chat').length
  const anonymous = await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-2'), '')
  t.same(anonymous, { status: 200, type: 'application/json; charset=utf-8', json: { error: 'missing credentials: send Authorization: Bearer <token or API key>, or Basic with the API key as the password', code: 5100 } })
  const unknownKey = await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-2'), 'Bearer not-a-key-or-token')
  t.same(unknownKey.json, { error: 'invalid token', code: 5100 })

  const aliceKey = await key('alice')
  const revoked = await key('alice')
  const id = ((await (await fetch(`${gw.url}/admin/keys?owner=alice`, { headers: gw.auth("admin") })).json()) as any).keys.find((k: any) => revoked.startsWith(k.prefix))?.id
  t.ok(id, 'the key is listed')
  t.equal((await fetch(`${gw.url}/admin/keys/${id}`, { method: 'DELETE', headers: gw.auth('admin') })).status, 200)
  const afterRevoke = await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-2'), `Bearer ${revoked}`)
  t.equal(afterRevoke.json.code, 5100)
  t.match(afterRevoke.json.error, /revoked/)

  const unknownModel = await nextPost(gw, CHAT_PATH, nextChat('gpt-4o', 's-2'), `Bearer ${aliceKey}`)
  t.same(unknownModel.json, { error: "model 'gpt-4o' not found", code: 5100 })
  const noMessages = await nextPost(gw, CHAT_PATH, { model: 'llama3.1', messages: [] }, `Bearer ${aliceKey}`)
  t.equal(noMessages.json.code, 5100)
  t.match(noMessages.json.error, /messages/)
  t.equal(chats(), 0, 'no refused request reached a backend')

  t.equal((await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-2'), `Bearer ${aliceKey}`)).json.code, 0)
  const spent = await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's-2'), `Bearer ${aliceKey}`)
  t.equal(spent.status, 200)
  t.same(spent.json, { code: 5103, limitation: 1040 })
  t.equal(chats(), 1)
})

t.test('/v1/tokenusage: the caller\'s own tokens with credentials, the session\'s without, nothing else', async (t) => {
  const { gw, key } = await setup(t)
  const alice = `Bearer ${await key('alice')}`
  const bob = `Bearer ${await key('bob')}`
  await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 'alice-s1'), alice)
  await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 'alice-s1'), alice)
  await nextPost(gw, CHAT_PATH, nextChat('qwen2.5-instruct', 'alice-s1'), alice)
  await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 'bob-s1'), bob)
  const usage = (body: unknown, authorization = ''): Promise<Answer> => nextPost(gw, '/biochatter/v1/tokenusage', body, authorization)

  t.same((await usage({ model: 'llama3.1', session_id: 'alice-s1' }, alice)).json,
    { code: 0, tokens: { prompt_tokens: 18, completion_tokens: 8, total_tokens: 26, model: 'llama3.1' }, auth_type: 'ClientOpenAI' })
  t.same((await usage({ session_id: 'alice-s1' }, alice)).json.tokens, { prompt_tokens: 27, completion_tokens: 12, total_tokens: 39 }, 'every model of the session')
  t.same((await usage({ model: 'llama3.1', session_id: 'alice-s1' }, bob)).json.tokens,
    { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, model: 'llama3.1' }, "bob's key does not read alice's session")
  // The browser's call, without credentials: its own chat session only.
  t.same((await usage({ model: 'llama3.1', session_id: 'alice-s1' })).json,
    { code: 0, tokens: { prompt_tokens: 18, completion_tokens: 8, total_tokens: 26, model: 'llama3.1' }, auth_type: 'ServerOpenAI' })
  t.same((await usage({ model: 'llama3.1', session_id: 'nobody' })).json.tokens, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, model: 'llama3.1' })
  t.same((await usage({ model: 'llama3.1' })).json,
    { code: 0, tokens: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, model: 'llama3.1' }, auth_type: 'Unknown' }, 'no session, no credentials: no totals of anyone')
  t.same((await usage({ model: 'llama3.1' }, 'Bearer cgk_wrong')).json.code, 5100, 'a wrong key is refused, not ignored')

  // The admin's usage report sees the same records, with the session kept.
  const report: any = await (await fetch(`${gw.url}/admin/usage?user=alice&groupBy=model`, { headers: gw.auth('admin') })).json()
  t.equal(report.totals.totalTokens, 39)
})

t.test('refusals on this surface are logged and recorded with their real status', async (t) => {
  const { gw, key } = await setup(t, { limits: { tokensPerDay: { user: 1040 } } })
  const alice = `Bearer ${await key('alice')}`
  t.equal((await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's'), alice)).json.code, 0)
  t.equal((await nextPost(gw, CHAT_PATH, nextChat('llama3.1', 's'), alice)).json.code, 5103)
  const records: any = await (await fetch(`${gw.url}/admin/usage/records?user=alice`, { headers: gw.auth('admin') })).json()
  t.same(records.records.map((r: any) => r.status).sort(), [200, 429])
})

/** A biochatter-server stand-in: answers each route with what it received. */
async function ragServer (t: Test): Promise<{ url: string, seen: Array<{ method: string, path: string, authorization: string | undefined, body: any, text: string }> }> {
  const seen: Array<{ method: string, path: string, authorization: string | undefined, body: any, text: string }> = []
  const server = createServer((req: IncomingMessage, res) => {
    let text = ''
    req.on('data', (d: Buffer) => { text += d.toString() })
    req.on('end', () => {
      seen.push({ method: req.method!, path: req.url!, authorization: req.headers.authorization, body: JSON.parse(text), text })
      res.setHeader('content-type', 'application/json')
      if (req.url!.endsWith('connectionstatus')) res.end(JSON.stringify({ status: 'connected', code: 0 }))
      else if (req.url === '/v1/rag/alldocuments') res.end(JSON.stringify({ documents: [{ id: '42', source: 'paper.pdf' }], code: 0 }))
      else if (req.url === '/v1/rag/newdocument') res.end(JSON.stringify({ id: '43', code: 0 }))
      else res.end(JSON.stringify({ id: JSON.parse(text).docId, code: 0 }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const CONNECTION = { connectionArgs: { host: 'local', port: '19530', user: null, password: null } }

t.test('RAG and KG routes without an upstream: status disconnected, documents a clear 5100', async (t) => {
  const { gw, key } = await setup(t)
  const alice = `Bearer ${await key('alice')}`
  t.same((await nextPost(gw, '/biochatter/v1/rag/connectionstatus', CONNECTION)).json, { status: 'disconnected', code: 0 })
  t.same((await nextPost(gw, '/biochatter/v1/kg/connectionstatus', CONNECTION)).json, { status: 'disconnected', code: 0 })
  t.same((await nextPost(gw, '/biochatter/v1/rag/alldocuments', CONNECTION, alice)).json,
    { error: 'no RAG server configured: set biochatter.upstream to a biochatter-server', code: 5100 })
  t.equal((await nextPost(gw, '/biochatter/v1/rag/document', { ...CONNECTION, docId: '1' }, alice, 'DELETE')).json.code, 5100)
  t.equal((await nextPost(gw, '/biochatter/v1/rag/alldocuments', CONNECTION)).json.code, 5100, 'documents need credentials by default')
  t.same((await nextPost(gw, '/biochatter/v1/nothing', {}, alice)).json, { error: 'no route POST /biochatter/v1/nothing', code: 5100 })
})

t.test('RAG and KG routes go to the configured biochatter-server, without the caller\'s credential', async (t) => {
  const rag = await ragServer(t)
  const { gw, key } = await setup(t, { biochatter: { upstream: rag.url } })
  const alice = `Bearer ${await key('alice')}`
  t.same((await nextPost(gw, '/biochatter/v1/rag/connectionstatus', CONNECTION)).json, { status: 'connected', code: 0 })
  t.same((await nextPost(gw, '/biochatter/v1/kg/connectionstatus', { connectionArgs: { host: 'local', port: '7687' } })).json, { status: 'connected', code: 0 })
  const upload = { filename: 'paper.pdf', tmpFile: '/tmp/abc.pdf', ragConfig: '{"chunkSize":1000}', useRAG: 'true' }
  t.same((await nextPost(gw, '/biochatter/v1/rag/newdocument', upload, alice)).json, { id: '43', code: 0 })
  t.same((await nextPost(gw, '/biochatter/v1/rag/alldocuments', { ...CONNECTION, docIds: ['42'] }, alice)).json, { documents: [{ id: '42', source: 'paper.pdf' }], code: 0 })
  t.same((await nextPost(gw, '/biochatter/v1/rag/document', { ...CONNECTION, docId: '42' }, alice, 'DELETE')).json, { id: '42', code: 0 })
  t.same(rag.seen.map((s) => [s.method, s.path, s.authorization]), [
    ['POST', '/v1/rag/connectionstatus', ''],
    ['POST', '/v1/kg/connectionstatus', ''],
    ['POST', '/v1/rag/newdocument', ''],
    ['POST', '/v1/rag/alldocuments', ''],
    ['DELETE', '/v1/rag/document', ''],
  ], 'the upstream uses its own key: the ChatGate key never reaches it')
  t.same(rag.seen[2]!.body, upload, 'bodies as the frontend sent them')
  const refused = await nextPost(gw, '/biochatter/v1/rag/newdocument', upload, '')
  t.equal(refused.json.code, 5100)
  t.equal(rag.seen.length, 5, 'a request without credentials never reaches the upstream')
  // Byte for byte, however it is written: spacing, key order, and nesting no re-encoding could take.
  const text = `{ "connectionArgs" : {"host":"local","port":"19530","user":null,"password":null}, "x": ${'['.repeat(20_000)}${']'.repeat(20_000)} }`
  const deep = await fetch(`${gw.url}/biochatter/v1/rag/alldocuments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: alice }, body: text })
  t.same(await deep.json(), { documents: [{ id: '42', source: 'paper.pdf' }], code: 0 })
  t.equal(rag.seen[5]!.text, text, 'the frontend\'s own text reached the upstream')
})

t.test('a RAG upstream that is down: status disconnected, documents a 5100 naming it', async (t) => {
  const rag = await ragServer(t)
  const { gw } = await setup(t, { biochatter: { upstream: `${rag.url}/`, ragAuth: 'none' } })
  t.equal((await nextPost(gw, '/biochatter/v1/rag/alldocuments', CONNECTION)).json.code, 0, 'ragAuth none: the browser\'s empty Authorization is enough')
  t.equal(rag.seen[0]!.path, '/v1/rag/alldocuments', 'a trailing slash in the upstream URL does not double')
  const down = await setup(t, { biochatter: { upstream: `http://127.0.0.1:1`, ragAuth: 'none' } })
  t.same((await nextPost(down.gw, '/biochatter/v1/rag/connectionstatus', CONNECTION)).json, { status: 'disconnected', code: 0 })
  const docs = await nextPost(down.gw, '/biochatter/v1/rag/alldocuments', CONNECTION)
  t.equal(docs.json.code, 5100)
  t.match(docs.json.error, /^RAG\/KG server unreachable/)
})

t.test('the prefix is configurable, and the API can be switched off', async (t) => {
  const { gw, key } = await setup(t, { biochatter: { prefix: '/next-api' } })
  const alice = `Bearer ${await key('alice')}`
  t.equal((await nextPost(gw, '/next-api/v1/chat/completions', nextChat('llama3.1', 's'), alice)).json.code, 0)
  const off = await setup(t, { biochatter: { enabled: false } })
  const res = await fetch(`${off.gw.url}/biochatter/v1/tokenusage`, { method: 'POST', headers: { ...off.gw.auth('admin'), 'content-type': 'application/json' }, body: '{}' })
  t.equal(res.status, 404)
})

t.test('chatgate biochatter-models prints the LLMModels block of what the pool serves', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.1:latest', 'qwen3:8b'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-next-models-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = join(dir, 'chatgate.yaml')
  writeFileSync(config, [
    `store: { dir: ${join(dir, 'data')} }`,
    'auth: { modelAccess: { user: ["llama*", "qwen-*", "gpt-*"] } }',
    'models: { aliases: { gpt-3.5-turbo: llama3.1 } }',
    'backends:',
    `  - { name: ol, type: ollama, url: "${o.url}" }`,
    `  - { name: xi, type: xinference, url: "${x.url}" }`,
    '  - { name: gone, type: ollama, url: "http://127.0.0.1:9", connectTimeoutMs: 500 }',
  ].join('\n'))
  const user = await cli(['biochatter-models', '--config', config])
  t.equal(user.code, 0)
  t.equal(user.stdout, [
    'LLMModels:',
    '  - name: llama3.1:latest',
    '    available: true',
    '  - name: qwen-a1b2',
    '    available: true',
    '  - name: gpt-3.5-turbo',
    '    available: true',
    '',
  ].join('\n'), "a user's models (access rules applied) and aliases, ready to paste")
  t.match(user.stderr, /backend gone \(http:\/\/127\.0\.0\.1:9\) did not answer/)
  const admin = await cli(['biochatter-models', '--role', 'admin', '--config', config])
  t.match(admin.stdout, /- name: qwen3:8b/)
  const bad = await cli(['biochatter-models', '--role', 'root', '--config', config])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /--role must be user or admin/)
  t.match((await cli(['biochatter-models', '--help'])).stdout, /LLMModels block/)
})
