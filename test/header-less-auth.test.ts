// Clients that cannot set a header: HTTP Basic with an API key as the password (from URL
// credentials), the per-path key /k/<key>/…, and trusted networks; bad input refused with a 401 in
// the caller's protocol, never reaching a backend.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { promisify } from 'node:util'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { OllamaEmulator } from './emulators/ollama.js'
import { captureLog } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { send } from './helpers/proxy-client.js'

const run = promisify(execFile)
const CHAT = { model: 'llama3.2', messages: [{ role: 'user', content: 'Hi!' }], stream: false }

interface Setup { gw: Gateway, o: OllamaEmulator, alice: string, bob: string, log: () => string }

async function setup (t: Test, auth: Record<string, unknown> = {}, server: Record<string, unknown> = {}): Promise<Setup> {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { auth, server, log: { level: 'info' } }, { logStream: log.stream })
  const keys = gw.app.gateway.keys
  const alice = keys.create({ owner: 'alice', role: 'user', createdBy: 'root' }).key
  const bob = keys.create({ owner: 'bob', role: 'user', createdBy: 'root' }).key
  return { gw, o, alice, bob, log: log.text }
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const chats = (o: OllamaEmulator): number => o.requests.filter((r) => r.path === '/api/chat').length

/** A request through Node's HTTP client with credentials in the URL (`auth`), as Go and Python send them. */
function nodeRequest (url: string, body: unknown): Promise<{ status: number, json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += String(c) })
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

t.test('Basic with the key as the password: from URL credentials (Node\'s HTTP client), curl -u, and the clients\' own forms', async (t) => {
  const s = await setup(t)
  const url = new URL(`${s.gw.url}/api/chat`)
  url.username = 'alice'
  url.password = s.alice
  const viaNode = await nodeRequest(url.href, CHAT)
  t.equal(viaNode.status, 200)
  t.match(viaNode.json, { model: 'llama3.2', done: true })

  const curl = await run('curl', ['-sS', '-u', `alice:${s.alice}`, `${s.gw.url}/v1/models`])
  t.match(JSON.parse(curl.stdout), { object: 'list', data: [{ id: 'llama3.2:latest' }] }, 'curl -u')

  // The ollama npm client cannot send URL credentials (fetch refuses them): its headers can carry Basic.
  const ollama = new Ollama({ host: s.gw.url, headers: { Authorization: basic('alice', s.alice) } })
  t.match(await ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hi!' }] }), { done: true })
  // Percent-encoded user names arrive decoded from URL-parsing clients; the header carries them as is.
  const records = s.gw.app.gateway.usage
  records.flush()
  t.ok(s.o.requests.every((r) => r.headers.authorization === undefined), 'the credential never reaches the backend')
  t.notOk(s.log().includes(s.alice), 'the key is never logged')
})

t.test('Basic refused: another user\'s name, empty or non-key passwords, malformed headers, revoked keys: 401 in the caller\'s protocol', async (t) => {
  const s = await setup(t)
  const before = chats(s.o)
  const cases: Array<[string, string, RegExp]> = [
    ['alice with bob\'s key', basic('alice', s.bob), /not the owner of this API key/],
    ['empty password', basic('alice', ''), /need a ChatGate API key as the password/],
    ['user name only (httpx form)', basic(s.alice, ''), /need a ChatGate API key as the password/],
    ['a password, not a key', basic('alice', 'alice-password'), /must be a ChatGate API key \(cg_…\)/],
    ['no colon', `Basic ${Buffer.from('alice').toString('base64')}`, /malformed Basic credentials/],
    ['not base64', 'Basic !!!not-base64!!!', /malformed Authorization header/],
    ['unknown scheme', 'Digest username="alice"', /malformed Authorization header/],
    ['unknown key', basic('alice', 'cg_unknownunknownunknownunknownunknownunkn'), /invalid|unknown/i],
  ]
  for (const [what, authorization, message] of cases) {
    const ollama = await send(s.gw.url, '/api/chat', { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(CHAT) })
    t.equal(ollama.status, 401, `${what}: 401`)
    t.match(ollama.json(), { error: message }, `${what}: Ollama's error shape`)
    const openai = await send(s.gw.url, '/v1/chat/completions', { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(CHAT) })
    t.match(openai.json(), { error: { message, type: 'authentication_error' } }, `${what}: OpenAI's error shape`)
  }
  const revokedKey = s.gw.app.gateway.keys.create({ owner: 'alice', role: 'user', createdBy: 'root' })
  s.gw.app.gateway.keys.revoke(revokedKey.record.id)
  const revoked = await send(s.gw.url, '/api/tags', { headers: { authorization: basic('alice', revokedKey.key) } })
  t.equal(revoked.status, 401)
  t.match(revoked.json(), { error: /revoked/ })
  t.equal(chats(s.o), before, 'none reached the backend')
  t.equal((await send(s.gw.url, '/healthz')).status, 200, 'still serving')
})

t.test('the per-path key: off by default; on, /k/<key>/… works for every surface, the Ollama CLI\'s heartbeat too, and the key is never logged', async (t) => {
  const off = await setup(t)
  const refused = await send(off.gw.url, `/k/${off.alice}/api/tags`)
  t.equal(refused.status, 401, 'off: the path is no credential')

  const s = await setup(t, { pathKeys: true })
  const prefix = `/k/${s.alice}`
  const base = `${s.gw.url}${prefix}`
  // What the Ollama CLI sends with OLLAMA_HOST=https://host/k/<key>: HEAD <base>/ first, then the API.
  for (const path of ['/', '']) {
    const head = await send(s.gw.url, prefix + path, { method: 'HEAD', headers: { 'user-agent': 'ollama/0.12.0 (amd64 linux) Go/go1.24.0' } })
    t.equal(head.status, 200, `HEAD /k/<key>${path}`)
  }
  const show = await send(s.gw.url, `${prefix}/api/show`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ model: 'llama3.2' }) })
  t.equal(show.status, 200, 'POST /api/show')
  const ollama = new Ollama({ host: base })
  t.match(await ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hi!' }] }), { done: true }, 'the ollama npm client with the key in its host path')
  const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused' })
  const completion = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hi!' }] })
  t.ok(completion.choices[0]?.message.content, 'the openai client with the key in its base URL (any apiKey)')
  const tags = await send(s.gw.url, `${prefix}/api/tags?x=1`)
  t.equal(tags.status, 200, 'with a query string')

  const bad = await send(s.gw.url, '/k/cg_wrongwrongwrongwrongwrongwrongwrongwrongw/api/tags')
  t.equal(bad.status, 401)
  t.match(bad.json(), { error: /invalid/i })
  const malformed = await send(s.gw.url, '/k/%E0%A4%A/api/tags')
  t.equal(malformed.status, 401, 'a malformed escape is an unknown key')
  await s.gw.app.close()
  t.notOk(s.log().includes(s.alice), 'the key is in no log line')
  t.match(s.log(), /"url":"\/api\/tags\?x=1"/, 'the request is logged without it')
})

t.test('trusted networks: callers without credentials act as the service user; with credentials, as themselves; off by default', async (t) => {
  const off = await setup(t)
  t.equal((await send(off.gw.url, '/api/tags')).status, 401, 'off: credentials needed')

  const s = await setup(t, { trustedNetworks: { cidrs: ['127.0.0.0/8', 'fd00::/8'], user: 'probe' } })
  const tags = await send(s.gw.url, '/api/tags')
  t.equal(tags.status, 200, 'a loopback caller without credentials')
  const chat = await send(s.gw.url, '/api/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(CHAT) })
  t.equal(chat.status, 200)
  const withKey = await send(s.gw.url, '/v1/me/limits', { headers: { authorization: `Bearer ${s.alice}` } })
  t.match(withKey.json(), { user: 'alice' }, 'credentials still name the caller')
  const wrongKey = await send(s.gw.url, '/api/tags', { headers: { authorization: 'Bearer cg_wrong' } })
  t.equal(wrongKey.status, 401, 'bad credentials are refused, not taken for the trusted network')
  const me = await send(s.gw.url, '/v1/me/limits')
  t.match(me.json(), { user: 'probe' }, 'acts as the service user')
  const admin = await send(s.gw.url, '/admin/users')
  t.equal(admin.status, 403, 'with the service user\'s role (user)')

  const elsewhere = await setup(t, { trustedNetworks: { cidrs: ['10.0.0.0/8', '192.168.7.7', '::1'] } })
  t.equal((await send(elsewhere.gw.url, '/api/tags')).status, 401, 'a caller outside the networks needs credentials')
})

t.test('trusted networks: the address behind a trusted proxy counts, and the CIDRs are checked', async (t) => {
  const s = await setup(t, { trustedNetworks: { cidrs: ['10.1.0.0/16'] } }, { trustProxy: true })
  t.equal((await send(s.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '10.1.2.3' } })).status, 200)
  t.equal((await send(s.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '10.2.0.1' } })).status, 401)
  // A client writes its own X-Forwarded-For; the load balancer appends the address it saw.
  t.equal((await send(s.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '10.1.2.3, 203.0.113.50' } })).status, 401,
    'trustProxy: true is one proxy: the entry the client wrote itself does not make it trusted')

  // Two proxies in a chain (a CDN, then the load balancer): the entry the CDN appended counts.
  const chain = await setup(t, { trustedNetworks: { cidrs: ['10.1.0.0/16'] } }, { trustProxy: 2 })
  t.equal((await send(chain.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '203.0.113.9, 10.1.2.3, 172.16.0.5' } })).status, 200)
  t.equal((await send(chain.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '10.1.2.3, 203.0.113.9, 172.16.0.5' } })).status, 401)
  // The proxies by address: every hop from them is trusted, the first other one is the client.
  const listed = await setup(t, { trustedNetworks: { cidrs: ['10.1.0.0/16'] } }, { trustProxy: ['127.0.0.0/8', '172.16.0.0/12'] })
  t.equal((await send(listed.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '203.0.113.9, 10.1.2.3, 172.16.0.5' } })).status, 200)
  t.equal((await send(listed.gw.url, '/api/tags', { headers: { 'x-forwarded-for': '10.1.2.3, 203.0.113.9, 172.16.0.5' } })).status, 401)
  const { validateConfig } = await import('../src/config/load.js')
  /** The config loader's message for these settings beside one backend ('' when they are fine). */
  const problemsWith = (settings: Record<string, unknown>): string => {
    try {
      validateConfig({ backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:11434' }], ...settings })
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  const problems = (cidrs: string[]): string => problemsWith({ auth: { trustedNetworks: { cidrs } } })
  const proxyProblems = (trustProxy: unknown): string => problemsWith({ server: { trustProxy } })
  t.equal(problems(['10.0.0.0/8', '192.168.1.7', '::1/128']), '')
  t.match(problems(['10.0.0.0/33']), /auth.trustedNetworks.cidrs\[0\]: "10.0.0.0\/33" has a prefix outside 0-32/)
  t.match(problems(['example.org/8']), /cidrs\[0\]: "example.org\/8" must be an IPv4 or IPv6 address/)
  t.match(problems(['10.0.0.0/8/1']), /must be an IPv4 or IPv6 address/)
  t.match(problems(['fd00::/129']), /prefix outside 0-128/)
  t.equal(proxyProblems(['10.0.0.0/8', '::1']), '')
  t.match(proxyProblems(['10.0.0.0/8', 'lb.internal']), /server\.trustProxy\[1\]: "lb.internal" must be an IPv4 or IPv6 address/)
  for (const bad of [0, 'yes', []]) t.match(proxyProblems(bad), /server\.trustProxy: must be true, false, a number of proxies \(1 or more\) or a list of their addresses/)
})
