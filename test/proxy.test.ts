// Reverse proxy to web apps (proxy.routes): what Nginx did in front of BioChatter Light and Open
// WebUI. Upstreams are real node:http and ws servers; ChatGate is the real gateway.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { connect as http2Connect } from 'node:http2'
import type { Writable } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import { SESSION_COOKIE } from '../src/auth/login-gate.js'
import { ConfigError, validateConfig } from '../src/config/load.js'
import { proxyProblems } from '../src/config/proxy-schema.js'
import { errorPage, prefersJson } from '../src/proxy/errors.js'
import { upstreamHeaders } from '../src/proxy/headers.js'
import { hostName } from '../src/proxy/hosts.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { logCapture, open, send, sendChunked, within, wsConnect } from './helpers/proxy-client.js'
import { deadPort, echo, startUpstream } from './helpers/proxy-upstream.js'

const HTML = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' }
const JSON_ACCEPT = { accept: 'application/json' }

async function backends (t: Test): Promise<Array<{ name: string, type: 'ollama', url: string }>> {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  return [{ name: 'o', type: 'ollama', url: o.url }]
}

/** A gateway with the given proxy routes (and any other config). */
async function gateway (t: Test, routes: object[], extra: Record<string, unknown> = {}, options: { logStream?: Writable } = {}): Promise<Gateway> {
  return startGateway(t, await backends(t), { ...extra, proxy: { routes } }, options)
}

const echoed = (answer: { json: () => any }): { method: string, url: string, headers: Record<string, string>, bytes: number, sha256: string } => answer.json()

t.test('prefix routes: the prefix is stripped by default, kept with stripPrefix: false, the upstream URL\'s path put in front', async (t) => {
  const [light, keep, based] = await Promise.all([startUpstream(t), startUpstream(t), startUpstream(t)])
  const gw = await gateway(t, [
    { prefix: '/light', upstream: light.url, auth: 'none' },
    { prefix: '/next', upstream: keep.url, auth: 'none', stripPrefix: false },
    { prefix: '/apps/based', upstream: `${based.url}/base/`, auth: 'none' },
  ])
  t.equal(echoed(await send(gw.url, '/light/x/y.js?q=1&q=2')).url, '/x/y.js?q=1&q=2', 'stripped, query kept')
  t.equal(echoed(await send(gw.url, '/light/?embed&a=b+c&x=%2F%20')).url, '/?embed&a=b+c&x=%2F%20', 'the query byte for byte')
  t.equal(echoed(await send(gw.url, '/light')).url, '/', 'the prefix alone is the app\'s root')
  t.equal(echoed(await send(gw.url, '/light/')).url, '/')
  t.equal(echoed(await send(gw.url, '/next/chat/1')).url, '/next/chat/1', 'kept')
  t.equal(echoed(await send(gw.url, '/next')).url, '/next')
  t.equal(echoed(await send(gw.url, '/apps/based/x')).url, '/base/x', 'under the upstream\'s own path')
  const other = await send(gw.url, '/lightning')
  t.equal(other.status, 401, 'a longer name is not under the prefix: ChatGate\'s not-found, closed to strangers')
  t.equal(light.seen.length, 4)
  t.equal(based.seen.length, 1)
})

t.test('a path that climbs out of the upstream\'s path is refused before the app', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/apps', upstream: `${up.url}/base`, auth: 'none' }])
  const res = await send(gw.url, '/apps/..%2f..%2fsecret', { headers: JSON_ACCEPT })
  t.equal(res.status, 400)
  t.match(res.json(), { error: { message: /invalid characters/ } }, 'worded by the gateway\'s own error handler')
  t.equal(up.seen.length, 0)
})

t.test('host routes own their host on every path, ChatGate\'s own included; other hosts are untouched', async (t) => {
  const [webui, apps] = await Promise.all([startUpstream(t), startUpstream(t)])
  const gw = await gateway(t, [
    { host: 'webui.example.org', upstream: webui.url, auth: 'none' },
    // A host route may use a prefix that is ChatGate's elsewhere.
    { host: 'apps.example.org', prefix: '/api', upstream: apps.url, auth: 'none' },
  ])
  for (const path of ['/', '/api/version', '/v1/models', '/healthz', '/auth']) {
    const res = await send(gw.url, path, { headers: { host: 'WebUI.example.org:8443' } })
    t.equal(res.status, 200, path)
    t.equal(echoed(res).url, path, `${path} reached Open WebUI`)
  }
  t.equal(webui.seen.length, 5)
  t.equal(echoed(await send(gw.url, '/api/x', { headers: { host: 'apps.example.org' } })).url, '/x')
  t.equal((await send(gw.url, '/v1/models', { headers: { host: 'apps.example.org', ...gw.auth() } })).status, 404, 'outside its prefix, the host has nothing: not even ChatGate\'s API')

  // Any other host: ChatGate as before, the apps never asked.
  const version = await send(gw.url, '/api/version', { headers: { host: 'chat.example.org', ...gw.auth() } })
  t.equal(version.status, 200)
  t.same(version.json(), { version: '0.12.0' }, 'Ollama\'s version, from ChatGate')
  t.equal((await send(gw.url, '/healthz', { headers: { host: 'webui.example.org.evil' } })).status, 200)
  t.equal(webui.seen.length, 5)
  t.equal(apps.seen.length, 1)
})

/** Store users with e-mail addresses, as the identity headers name them. */
async function withUsers (gw: Gateway): Promise<void> {
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password', email: 'alice@example.org' })
}

async function apiKey (t: Test, gw: Gateway, owner: string): Promise<string> {
  const res = await send(gw.url, '/admin/keys', { method: 'POST', headers: { ...gw.auth('admin'), 'content-type': 'application/json' }, body: JSON.stringify({ owner }) })
  t.equal(res.status, 201, 'key made')
  return res.json().key as string
}

// What a client could send to pose as someone else to an app that trusts a proxy in front.
const SPOOFED = {
  'x-forwarded-user': 'mallory',
  'x-forwarded-email': 'ceo@example.org',
  'x-forwarded-groups': 'admin',
  'x-auth-request-user': 'mallory',
  'x-user': 'mallory',
  'remote-user': 'mallory',
}

t.test('auth bearer: 401 without a credential (a page, or JSON when asked), 200 with a JWT or an API key', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'bearer' }])
  await withUsers(gw)

  const page = await send(gw.url, '/light/', { headers: HTML })
  t.equal(page.status, 401)
  t.match(page.headers['content-type'], /^text\/html/)
  t.equal(page.headers['www-authenticate'], 'Bearer realm="ChatGate"')
  t.match(page.text, /<title>401 Unauthorized<\/title>/)
  t.match(page.text, /Missing credentials: send Authorization: Bearer &lt;token or API key&gt;, or Basic with the API key as the password\./, 'the reason, escaped')
  const json = await send(gw.url, '/light/', { headers: JSON_ACCEPT })
  t.equal(json.status, 401)
  t.same(json.json(), { error: { message: 'missing credentials: send Authorization: Bearer <token or API key>, or Basic with the API key as the password', type: 'authentication_error', param: null, code: 'missing_credentials' } })
  t.equal((await send(gw.url, '/light/', { headers: { authorization: 'Bearer not-a-token' } })).status, 401, 'a bad token')
  t.equal(up.seen.length, 0, 'nothing reached the app')

  t.equal((await send(gw.url, '/light/', { headers: gw.auth('user', 'alice') })).status, 200, 'JWT')
  const key = await apiKey(t, gw, 'alice')
  const viaBearer = await send(gw.url, '/light/a', { headers: { authorization: `Bearer ${key}` } })
  t.equal(viaBearer.status, 200, 'API key as Bearer')
  t.equal(echoed(viaBearer).headers['x-forwarded-user'], 'alice', 'acting for its owner')
  t.equal((await send(gw.url, '/light/b', { headers: { 'x-api-key': key } })).status, 200, 'API key as x-api-key')
  t.equal(up.seen.length, 3)
})

t.test('auth none: anyone reaches the app, which keeps its own Authorization header', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/webui', upstream: up.url, auth: 'none' }])
  const res = await send(gw.url, '/webui/api/v1/chats', { headers: { authorization: 'Bearer open-webui-session', cookie: 'token=abc' } })
  t.equal(res.status, 200)
  t.equal(echoed(res).headers.authorization, 'Bearer open-webui-session', 'the app\'s own token passes')
  t.equal(echoed(res).headers.cookie, 'token=abc')
})

t.test('identity headers: set from the caller, and a client\'s own stripped on both auth modes', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [
    { prefix: '/bearer', upstream: up.url, auth: 'bearer' },
    { prefix: '/open', upstream: up.url, auth: 'none' },
  ])
  await withUsers(gw)

  const alice = echoed(await send(gw.url, '/bearer/', { headers: { ...SPOOFED, ...gw.auth('user', 'alice') } })).headers
  t.equal(alice['x-forwarded-user'], 'alice')
  t.equal(alice['x-forwarded-email'], 'alice@example.org', 'from the user store')
  t.equal(alice['x-forwarded-groups'], 'user')
  for (const name of ['x-auth-request-user', 'x-user', 'remote-user']) t.notOk(name in alice, `${name} dropped`)

  // A token subject the store does not know (`chatgate token`): no e-mail to give.
  const root = echoed(await send(gw.url, '/bearer/', { headers: { ...SPOOFED, ...gw.auth('admin', 'root') } })).headers
  t.equal(root['x-forwarded-user'], 'root')
  t.notOk('x-forwarded-email' in root, 'no address known: none sent (not the client\'s)')
  t.equal(root['x-forwarded-groups'], 'admin')

  // A subject from another issuer may hold anything; it cannot come out as someone else's name.
  const odd = echoed(await send(gw.url, '/bearer/', { headers: gw.auth('user', 'zoë 100%') })).headers
  t.equal(odd['x-forwarded-user'], 'zo%C3%AB%20100%25')

  const anonymous = echoed(await send(gw.url, '/open/', { headers: SPOOFED })).headers
  for (const name of Object.keys(SPOOFED)) t.notOk(name in anonymous, `${name} dropped on an auth: none route`)
})

t.test('the caller\'s ChatGate credential never reaches the app of a bearer route', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'bearer' }])
  await withUsers(gw)
  const key = await apiKey(t, gw, 'alice')
  const jwt = echoed(await send(gw.url, '/light/', { headers: { ...gw.auth(), 'x-api-key': 'cg_whatever' } })).headers
  t.notOk('authorization' in jwt, 'no JWT')
  t.notOk('x-api-key' in jwt)
  const keyed = echoed(await send(gw.url, '/light/', { headers: { authorization: `Bearer ${key}`, 'proxy-authorization': 'Basic eDp5' } })).headers
  t.notOk('authorization' in keyed, 'no API key')
  t.notOk('proxy-authorization' in keyed)
  const viaHeader = echoed(await send(gw.url, '/light/', { headers: { 'x-api-key': key } })).headers
  t.notOk('x-api-key' in viaHeader)
  t.notOk(JSON.stringify(up.seen.map((s) => s.headers)).includes(key.slice(3)), 'the key is nowhere in what the app saw')
})

t.test('ChatGate\'s browser-session cookie never reaches an app; the app\'s own cookies do', async (t) => {
  const up = await startUpstream(t, echo, { webSocket: true })
  const gw = await gateway(t, [{ prefix: '/open', upstream: up.url, auth: 'none' }, { prefix: '/light', upstream: up.url, auth: 'bearer' }])
  const mixed = `theme=dark; ${SESSION_COOKIE}=s3cret-session;_streamlit_xsrf=2|abc`
  t.equal(echoed(await send(gw.url, '/open/', { headers: { cookie: mixed } })).headers.cookie, 'theme=dark; _streamlit_xsrf=2|abc')
  t.equal(echoed(await send(gw.url, '/light/', { headers: { cookie: mixed, ...gw.auth() } })).headers.cookie, 'theme=dark; _streamlit_xsrf=2|abc', 'bearer routes too')
  t.notOk('cookie' in echoed(await send(gw.url, '/open/', { headers: { cookie: `${SESSION_COOKIE}=s3cret-session` } })).headers, 'nothing left: no Cookie header')
  const ws = await wsConnect(t, gw, '/open/ws', { cookie: `${SESSION_COOKIE}=s3cret-session` })
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`)
  t.equal(String(await ws.next()), 'path /ws', 'the app has the WebSocket')
  t.notOk('cookie' in up.upgrades[0]!.headers, 'nor on a WebSocket upgrade')
  t.notOk(JSON.stringify(up.seen.map((s) => s.headers)).includes('s3cret-session'))
})

t.test('X-Forwarded-For/-Proto/-Host: ChatGate\'s own view, or appended to a trusted proxy\'s', async (t) => {
  const up = await startUpstream(t)
  const claims = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', 'x-real-ip': '203.0.113.7', forwarded: 'for=203.0.113.7' }

  const direct = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }])
  const seen = echoed(await send(direct.url, '/light/', { headers: { ...claims, host: 'chat.example.org:8080' } })).headers
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'a client\'s claim is replaced')
  t.equal(seen['x-forwarded-proto'], 'http')
  t.equal(seen['x-forwarded-host'], 'chat.example.org:8080', 'the Host the client asked for')
  t.equal(seen.host, `127.0.0.1:${up.port}`, 'the app is asked under its own name')
  t.notOk('x-real-ip' in seen)
  t.notOk('forwarded' in seen)
  t.equal(echoed(await send(direct.url, '/light/')).headers['x-forwarded-for'], '127.0.0.1')

  const behind = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }], { server: { trustProxy: true } })
  const chained = echoed(await send(behind.url, '/light/', { headers: { ...claims, host: 'internal:8080' } })).headers
  t.equal(chained['x-forwarded-for'], '203.0.113.7, 127.0.0.1', 'appended, as Nginx\'s $proxy_add_x_forwarded_for')
  t.equal(chained['x-forwarded-proto'], 'https', 'the trusted proxy\'s view')
  t.equal(chained['x-forwarded-host'], 'evil.example')
  t.equal(chained['x-real-ip'], '203.0.113.7', 'earlier hops\' headers kept from a trusted proxy')
  t.equal(chained.forwarded, 'for=203.0.113.7')
})

t.test('WebSocket pass-through: auth and identity headers on the upgrade, refused without a credential', async (t) => {
  const up = await startUpstream(t, echo, { webSocket: true })
  const gw = await gateway(t, [
    { prefix: '/light', upstream: up.url, auth: 'bearer' },
    { prefix: '/plain', upstream: up.url, auth: 'none', websocket: false },
  ])
  await withUsers(gw)

  const ws = await wsConnect(t, gw, '/light/_stcore/stream?session=1', { ...gw.auth('user', 'alice'), ...SPOOFED, cookie: 'streamlit=1', origin: 'https://chat.example.org' })
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`)
  t.equal(String(await ws.next()), 'path /_stcore/stream?session=1', 'the app was reached on its own path')
  ws.socket.send('hello')
  t.equal(String(await ws.next()), 'hello', 'echo through the proxy')
  ws.socket.send(Buffer.from([0, 1, 255]))
  t.same(await ws.next(), Buffer.from([0, 1, 255]), 'binary frames too')

  const upgrade = up.upgrades[0]!.headers
  t.equal(upgrade['x-forwarded-user'], 'alice')
  t.equal(upgrade['x-forwarded-email'], 'alice@example.org')
  t.equal(upgrade['x-forwarded-groups'], 'user')
  for (const name of ['authorization', 'x-auth-request-user', 'x-user', 'remote-user']) t.notOk(name in upgrade, `no ${name}`)
  t.equal(upgrade.cookie, 'streamlit=1', 'the app\'s cookies pass')
  t.equal(upgrade.origin, 'https://chat.example.org')
  t.equal(upgrade['x-forwarded-for'], '127.0.0.1')
  t.equal(upgrade['x-forwarded-host'], new URL(gw.url).host)
  t.equal(upgrade.host, `127.0.0.1:${up.port}`)

  t.equal(await wsConnect(t, gw, '/light/_stcore/stream'), 401, 'no credential: refused at the upgrade')
  t.equal(await wsConnect(t, gw, '/light/_stcore/stream', { authorization: 'Bearer forged' }), 401)
  t.equal(await wsConnect(t, gw, '/plain/ws'), 400, 'websocket: false refuses upgrades')
  t.equal(up.upgrades.length, 1, 'none of those reached the app')
  const plain = await send(gw.url, '/plain/ws')
  t.equal(plain.status, 200, 'plain requests on that route still pass')

  // Without any WebSocket route there is no upgrade handler at all: Node hands the upgrade over
  // as a plain request, and the route refuses it just the same.
  const noWs = await gateway(t, [{ prefix: '/plain', upstream: up.url, auth: 'none', websocket: false }])
  t.equal(await wsConnect(t, noWs, '/plain/ws'), 400)
  t.equal(up.upgrades.length, 1)
})

t.test('a client that leaves while the app is still accepting its WebSocket leaves no connection open at the app', async (t) => {
  let accept!: () => void
  const accepting = new Promise<void>((resolve) => { accept = resolve })
  const up = await startUpstream(t)
  // The app holds the handshake until the test lets it go on.
  const wss = new WebSocketServer({ server: up.server, verifyClient: (_info, done) => { void accepting.then(() => done(true)) } })
  const appSide = new Promise<WebSocket>((resolve) => wss.on('connection', resolve))
  t.teardown(() => { for (const client of wss.clients) client.terminate() })
  const log = logCapture()
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }], { log: { level: 'info' } }, { logStream: log.stream })
  const ws = await wsConnect(t, gw, '/light/_stcore/stream')
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`)
  ws.socket.terminate()
  // The request's log line is written when the gateway has seen the client's connection end.
  await within(log.until((l) => l.url === '/light/_stcore/stream'), 'the gateway never saw the client leave')
  accept()
  const socket = await within(appSide, 'the app never got the connection')
  const [code] = await within(once(socket, 'close'), 'the app\'s connection was left open') as [number]
  t.equal(code, 1001, 'closed by the gateway: going away')
})

t.test('a WebSocket to an app that is down is closed without naming the app\'s address', async (t) => {
  const port = await deadPort()
  const gw = await gateway(t, [{ prefix: '/down', upstream: `http://127.0.0.1:${port}`, auth: 'none' }])
  const ws = await wsConnect(t, gw, '/down/ws')
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`)
  const [code, reason] = await once(ws.socket, 'close') as [number, Buffer]
  t.equal(code, 1011)
  t.equal(String(reason), 'the connection to the web app failed')
})

t.test('a streamed response reaches the client chunk by chunk, while the app still holds the rest', async (t) => {
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    void released.then(() => res.end('data: two\n\n'))
  })
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }])
  const res = await open(gw.url, '/light/events')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/event-stream')
  let ended = false
  res.once('end', () => { ended = true })
  const [first] = await within(once(res, 'data'), 'the first chunk was held back until the app ended its response') as [Buffer]
  t.equal(String(first), 'data: one\n\n', 'the first chunk, alone')
  t.notOk(ended, 'the response is still open')
  release()
  const rest: Buffer[] = []
  for await (const chunk of res) rest.push(chunk as Buffer)
  t.equal(Buffer.concat(rest).toString(), 'data: two\n\n', 'then the rest, once the app sent it')
})

t.test('request bodies reach the app byte for byte, past server.bodyLimit: binary, multipart, forms, text, JSON, chunked', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }], { server: { bodyLimit: 1024 * 1024 } })
  const boundary = '----chatgate-test-boundary'
  const file = randomBytes(64 * 1024)
  const multipart = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nnot JSON {\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="paper.pdf"\r\nContent-Type: application/pdf\r\n\r\n`),
    file,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ])
  const cases: Array<[string | undefined, Buffer]> = [
    ['application/octet-stream', randomBytes(3 * 1024 * 1024)], // three times server.bodyLimit
    [`multipart/form-data; boundary=${boundary}`, multipart],
    ['application/x-www-form-urlencoded', Buffer.from('a=1&b=%C3%A9+x&c=')],
    ['text/plain; charset=latin1', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a])], // not UTF-8
    ['application/json', Buffer.from('{ "a" : 1,\n  "b":[ ] }')], // spacing a re-serialisation would lose
    ['application/json', Buffer.from('not json')], // the root parser would answer 400
    [undefined, Buffer.from('no content type')],
  ]
  for (const [type, body] of cases) {
    const res = await send(gw.url, '/light/upload', { method: 'POST', headers: type === undefined ? {} : { 'content-type': type }, body })
    t.equal(res.status, 200, `${type ?? 'no content type'}: accepted`)
    const seen = up.seen.at(-1)!
    t.ok(seen.body.equals(body), `${type ?? 'no content type'}: byte for byte`)
    t.equal(seen.headers['content-type'], type)
  }
  const parts = [randomBytes(100_000), randomBytes(1), randomBytes(70_000)]
  const chunked = await sendChunked(gw.url, '/light/upload', parts)
  t.equal(chunked.status, 200)
  t.ok(up.seen.at(-1)!.body.equals(Buffer.concat(parts)), 'a chunked upload, whole')
  const put = await send(gw.url, '/light/doc', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from([1, 2, 3]) })
  t.match(echoed(put), { method: 'PUT', bytes: 3 }, 'other methods too')
})

t.test('bodyLimit: over it, 413 and the app never asked (declared) or cut off (counted)', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/up', upstream: up.url, auth: 'none', bodyLimit: 1000 }])
  t.equal((await send(gw.url, '/up/', { method: 'POST', body: Buffer.alloc(1000) })).status, 200, 'up to the limit')
  const page = await send(gw.url, '/up/', { method: 'POST', headers: HTML, body: Buffer.alloc(1001) })
  t.equal(page.status, 413)
  t.match(page.text, /<title>413 Payload Too Large<\/title>/)
  t.match(page.text, /Request body is larger than this app accepts \(1000 bytes\)/)
  t.equal(page.headers.connection, 'close', 'the rest of the upload is not read')
  const json = await send(gw.url, '/up/', { method: 'POST', headers: JSON_ACCEPT, body: Buffer.alloc(5000) })
  t.match(json.json(), { error: { code: 'request_too_large' } })
  t.equal(up.seen.length, 1, 'declared too large: the app was not asked')
  const counted = await sendChunked(gw.url, '/up/', [Buffer.alloc(600), Buffer.alloc(600)], JSON_ACCEPT)
  t.equal(counted.status, 413, 'chunked: counted as it arrives')
  t.match(JSON.parse(counted.text), { error: { message: 'request body is larger than this app accepts (1000 bytes)' } })
})

t.test('a client that leaves mid-upload ends the app\'s request unfinished', async (t) => {
  let reached!: () => void
  const arrived = new Promise<void>((resolve) => { reached = resolve })
  let complete!: (done: boolean) => void
  const closed = new Promise<boolean>((resolve) => { complete = resolve })
  const up = await startUpstream(t, (req) => {
    req.on('close', () => complete(req.complete))
    req.resume()
    reached()
  }, { early: true })
  const gw = await gateway(t, [{ prefix: '/up', upstream: up.url, auth: 'none' }])
  const req = httpRequest(new URL('/up/file', gw.url), { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, agent: false })
  req.on('error', () => {})
  req.write(Buffer.alloc(1024))
  await arrived
  req.destroy()
  t.equal(await closed, false, 'the app saw its request end before the body did')
})

t.test('app down: a 502 page naming the route, not its address; JSON when asked', async (t) => {
  const port = await deadPort()
  const gw = await gateway(t, [
    { prefix: '/light', upstream: `http://127.0.0.1:${port}`, auth: 'none' },
    { host: 'webui.example.org', prefix: '/', upstream: `http://127.0.0.1:${port}/`, auth: 'none' },
  ])
  const page = await send(gw.url, '/light/', { headers: HTML })
  t.equal(page.status, 502)
  t.match(page.headers['content-type'], /^text\/html; charset=utf-8/)
  t.equal(page.headers['cache-control'], 'no-store')
  t.match(page.text, /<title>502 Bad Gateway<\/title>/)
  t.match(page.text, /ChatGate could not reach the web app at \/light\./)
  t.notMatch(page.text, String(port), 'no upstream port')
  t.notMatch(page.text, '127.0.0.1', 'no upstream address')
  const json = await send(gw.url, '/light/x', { headers: { accept: 'application/json, text/plain, */*' } })
  t.equal(json.status, 502)
  t.same(json.json(), { error: { message: 'ChatGate could not reach the web app at /light', type: 'api_error', param: null, code: 'upstream_unreachable' } })
  const byHost = await send(gw.url, '/', { headers: { host: 'webui.example.org' } })
  t.equal(byHost.status, 502, 'no Accept: a page')
  t.match(byHost.text, /at webui\.example\.org\./)
})

t.test('app too slow: a 504 page once timeoutMs has passed without response headers', async (t) => {
  const up = await startUpstream(t, () => {}, { early: true }) // never answers
  const gw = await gateway(t, [{ prefix: '/slow', upstream: up.url, auth: 'none', timeoutMs: 200 }])
  const page = await send(gw.url, '/slow/report', { headers: HTML })
  t.equal(page.status, 504)
  t.match(page.text, /<title>504 Gateway Timeout<\/title>/)
  t.match(page.text, /The web app at \/slow did not answer in time\./)
  const json = await send(gw.url, '/slow/report', { headers: JSON_ACCEPT })
  t.same(json.json(), { error: { message: 'the web app at /slow did not answer in time', type: 'api_error', param: null, code: 'upstream_timeout' } })
  t.equal(up.seen.length, 2, 'the app had the requests')
})

t.test('a connection the app dropped without answering: a GET is sent again once, a POST is not', async (t) => {
  const dropped = new Set<string>()
  const up = await startUpstream(t, (req, res, seen) => {
    if (!dropped.has(seen.url)) {
      dropped.add(seen.url)
      req.socket.destroy()
      return
    }
    echo(req, res, seen)
  })
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'none' }])
  t.equal((await send(gw.url, '/light/page')).status, 200, 'GET: answered on the second try')
  t.equal(up.seen.filter((s) => s.url === '/page').length, 2)
  t.equal((await send(gw.url, '/light/form', { method: 'POST', body: 'a=1' })).status, 502, 'POST: not sent twice')
  t.equal(up.seen.filter((s) => s.url === '/form').length, 1)
  t.equal((await send(gw.url, '/light/page')).status, 200, 'no retry needed')
  t.equal(up.seen.filter((s) => s.url === '/page').length, 3)
})

t.test('redirects to the app\'s own URLs land under the route; others stay', async (t) => {
  const up = await startUpstream(t, (_req, res, seen) => {
    res.writeHead(302, { location: new URL(seen.url, 'http://x').searchParams.get('to')! })
    res.end()
  })
  const gw = await gateway(t, [
    { prefix: '/light', upstream: up.url, auth: 'none' },
    { prefix: '/next', upstream: up.url, auth: 'none', stripPrefix: false },
    { prefix: '/apps', upstream: `${up.url}/base`, auth: 'none' },
    { host: 'webui.example.org', upstream: up.url, auth: 'none' },
  ])
  const location = async (path: string, to: string, host?: string): Promise<string | undefined> =>
    (await send(gw.url, `${path}?to=${encodeURIComponent(to)}`, { headers: host === undefined ? {} : { host } })).headers.location
  t.equal(await location('/light/', `${up.url}/login?next=%2F`), '/light/login?next=%2F', 'the app\'s absolute URL')
  t.equal(await location('/light/', up.url), '/light')
  t.equal(await location('/light/', '/login'), '/light/login', 'a path on the app')
  t.equal(await location('/light/', 'https://github.com/login/oauth'), 'https://github.com/login/oauth', 'another site')
  t.equal(await location('/light/', '//github.com/x'), '//github.com/x')
  t.equal(await location('/light/', 'login'), 'login', 'a relative path resolves under the route by itself')
  t.equal(await location('/light/', `${up.url}0/x`), `${up.url}0/x`, 'another port')
  t.equal(await location('/next/', '/next/chat'), '/next/chat', 'kept prefix')
  t.equal(await location('/next/', `${up.url}/next`), '/next')
  t.equal(await location('/next/', '/nextcloud'), '/nextcloud', 'outside the kept prefix')
  t.equal(await location('/apps/', '/base/x'), '/apps/x', 'under the upstream\'s path')
  t.equal(await location('/apps/', '/elsewhere'), '/elsewhere')
  t.equal(await location('/', `${up.url}/auth`, 'webui.example.org'), '/auth', 'host route')
  t.equal(await location('/', `${up.url}?x=1`, 'webui.example.org'), '/?x=1')
})

t.test('proxied requests do not count against the per-user API rate limit; a key\'s own limit still holds', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'bearer' }], { limits: { requestsPerMinute: { user: 2 } } })
  for (let i = 0; i < 5; i++) t.equal((await send(gw.url, `/light/asset-${i}.js`, { headers: gw.auth() })).status, 200, `page asset ${i}`)
  const api = []
  for (let i = 0; i < 3; i++) api.push((await send(gw.url, '/v1/models', { headers: gw.auth() })).status)
  t.same(api, [200, 200, 429], 'the API is limited as before')

  // A key made with a limit of its own is capped everywhere it is used (src/usage/rate-limits.ts).
  await withUsers(gw)
  const made = await send(gw.url, '/admin/keys', { method: 'POST', headers: { ...gw.auth('admin'), 'content-type': 'application/json' }, body: JSON.stringify({ owner: 'alice', limits: { requestsPerMinute: 1 } }) })
  const key = made.json().key as string
  t.equal((await send(gw.url, '/light/', { headers: { authorization: `Bearer ${key}` } })).status, 200)
  const capped = await send(gw.url, '/light/', { headers: { authorization: `Bearer ${key}`, ...HTML } })
  t.equal(capped.status, 429)
  t.match(capped.text, /<title>429 Too Many Requests<\/title>/)
  t.match(capped.headers['retry-after'], /^\d+$/)
})

t.test('without proxy routes nothing is registered', async (t) => {
  const gw = await gateway(t, [])
  t.equal((await send(gw.url, '/light/', { headers: gw.auth() })).status, 404)
})

t.test('each proxied request gets the gateway\'s one log line, and no more', async (t) => {
  const up = await startUpstream(t)
  const log = logCapture()
  const gw = await gateway(t, [{ prefix: '/light', upstream: up.url, auth: 'bearer' }], { log: { level: 'info' } }, { logStream: log.stream })
  await withUsers(gw)
  t.equal((await send(gw.url, '/light/app.js?v=2', { headers: gw.auth('user', 'alice') })).status, 200)
  const line = await within(log.until((l) => l.url === '/light/app.js?v=2'), 'no log line')
  t.match(line, { msg: 'request', method: 'GET', status: 200, user: 'alice', durationMs: Number })
  t.equal((await send(gw.url, '/light/', {})).status, 401)
  t.match(await within(log.until((l) => l.url === '/light/' && l.status === 401), 'no log line for the 401'), { msg: 'request' })
  t.same(log.lines.filter((l) => /fetching from remote server|response received/.test(String(l.msg))), [], 'reply-from\'s own lines are off')
})

t.test('HTTP/1.0 without a Host header still reaches ChatGate\'s routes beside host routes', async (t) => {
  const up = await startUpstream(t)
  const gw = await gateway(t, [{ host: 'webui.example.org', upstream: up.url, auth: 'none' }])
  const { connect } = await import('node:net')
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.end('GET /healthz HTTP/1.0\r\n\r\n')
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  t.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.[01] 200/)
  t.equal(up.seen.length, 0)
})

const BACKEND = { name: 'o', type: 'ollama', url: 'http://127.0.0.1:11434' }

/** The loader's problems for these routes, or [] when it accepts them. */
function loaderProblems (routes: unknown[]): string[] {
  try {
    validateConfig({ backends: [BACKEND], proxy: { routes } })
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
}

/**
 * The problems of rules between fields and routes: from the loader once its crossCheck calls
 * proxyProblems, until then from proxyProblems on what the loader's schema accepted.
 */
function crossProblems (routes: unknown[]): string[] {
  const fromLoader = loaderProblems(routes)
  return fromLoader.length > 0 ? fromLoader : proxyProblems(validateConfig({ backends: [BACKEND], proxy: { routes } }).proxy)
}

t.test('config: defaults, and every problem of a route named by its path', async (t) => {
  const config = validateConfig({ backends: [BACKEND], proxy: { routes: [{ prefix: '/light', upstream: 'http://127.0.0.1:8501' }] } })
  t.same(config.proxy.routes, [{ prefix: '/light', upstream: 'http://127.0.0.1:8501', stripPrefix: true, websocket: true, auth: 'login', timeoutMs: 600_000, bodyLimit: 50 * 1024 * 1024 }])
  t.same(validateConfig({ backends: [BACKEND] }).proxy, { routes: [] }, 'no proxy key: no routes')

  const upstreamMessage = 'proxy.routes[0].upstream: must be an http(s) URL of the web app, like http://127.0.0.1:8501 (no user:password@, query or fragment); a path in it is put in front of every forwarded path'
  for (const upstream of ['ftp://files.example.org', '127.0.0.1:8501', 'http://user:secret@127.0.0.1:8501', 'http://127.0.0.1:8501/?x=1', 'http://']) {
    t.same(loaderProblems([{ prefix: '/light', upstream }]), [upstreamMessage], upstream)
  }
  t.same(loaderProblems([{ prefix: '/light' }]), ['proxy.routes[0].upstream: must be required property'], 'no upstream (in the loader\'s words)')
  const prefixMessage = 'proxy.routes[0].prefix: must be a path prefix like /light (letters, digits and . _ ~ - between slashes, no trailing slash): the requests under it go to this route'
  for (const prefix of ['light', '/light/', '/a//b', '/a/../b', '/:id', '/*', '']) {
    t.same(loaderProblems([{ prefix, upstream: 'http://a' }]), [prefixMessage], JSON.stringify(prefix))
  }
  t.same(loaderProblems([{ host: 'https://webui.example.org', upstream: 'http://a' }]), [
    'proxy.routes[0].host: must be a host name like webui.example.org (no scheme, port or path): requests whose Host header names it go to this route, on every path (or under prefix)',
  ])
  t.same(loaderProblems([{ prefix: '/a', upstream: 'http://a', auth: 'oauth' }]), ['proxy.routes[0].auth: must be one of: login, bearer, none'])
  t.same(loaderProblems([{ prefix: '/a', upstream: 'http://a', path: '/a' }]), ['proxy.routes[0].path: unknown key'])
  t.same(loaderProblems([{ prefix: '/a', upstream: 'http://a', timeoutMs: 0, bodyLimit: -1 }]), [
    'proxy.routes[0].timeoutMs: must be integer to be greater or equal to 1',
    'proxy.routes[0].bodyLimit: must be integer to be greater or equal to 0',
  ])
})

t.test('config: the rules between fields and routes (proxyProblems)', async (t) => {
  for (const [prefix, owner] of [['/v1', '/v1 routes'], ['/api/tags', '/api routes'], ['/Admin', '/admin routes'], ['/biochatter', '/biochatter routes'], ['/', 'routes']]) {
    t.same(crossProblems([{ prefix, upstream: 'http://a' }]), [`proxy.routes[0].prefix: "${prefix}" would hide ChatGate's own ${owner}; choose another prefix, or give the route a host of its own`], prefix)
  }
  t.same(crossProblems([{ host: 'webui.example.org', prefix: '/api', upstream: 'http://a' }, { host: 'webui.example.org', prefix: '/', upstream: 'http://b' }]), [], 'a host route may take any path')
  t.same(crossProblems([{ upstream: 'http://a', auth: 'none' }]), ['proxy.routes[0]: needs a prefix (like /light), a host (like webui.example.org), or both'])
  t.same(crossProblems([{ prefix: '/light', upstream: 'http://127.0.0.1:99999' }]), ['proxy.routes[0].upstream: "http://127.0.0.1:99999" is not a valid URL'])
  t.same(crossProblems([
    { prefix: '/light', upstream: 'http://a' },
    { prefix: '/light', upstream: 'http://b' },
    { host: 'WebUI.example.org', upstream: 'http://c' },
    { host: 'webui.example.org', prefix: '/', upstream: 'http://d' },
    { host: 'webui.example.org', prefix: '/light', upstream: 'http://e' },
  ]), [
    'proxy.routes[1]: matches the same prefix as proxy.routes[0]',
    'proxy.routes[3]: matches the same host and prefix as proxy.routes[2]',
  ])
  t.same(crossProblems([{ prefix: '/lightning', upstream: 'http://a' }, { prefix: '/apiary', upstream: 'http://b' }]), [], 'only whole segments are reserved')
})

t.test('a gateway refuses to start with routes the rules forbid', async (t) => {
  const routes = [{ prefix: '/v1', upstream: 'http://127.0.0.1:1' }, { upstream: 'http://127.0.0.1:1' }]
  await t.rejects(gateway(t, routes), {
    name: 'Error',
    problems: [
      'proxy.routes[0].prefix: "/v1" would hide ChatGate\'s own /v1 routes; choose another prefix, or give the route a host of its own',
      'proxy.routes[1]: needs a prefix (like /light), a host (like webui.example.org), or both',
    ],
  })
})

t.test('units: Accept negotiation, pages, Host names, headers from a socket already gone', async (t) => {
  const cases: Array<[string | undefined, boolean]> = [
    [undefined, false],
    ['*/*', false],
    ['text/html', false],
    ['application/json', true],
    ['application/json, text/plain, */*', true],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', false],
    ['application/*', true],
    ['text/*, application/json;q=0.5', false],
    ['application/json;q=0.4, text/html;q=0.9', false],
    ['text/html;q=0.1, application/json', true],
    ['application/json;q=oops, text/html;q=0.2', false],
    ['image/png', false],
  ]
  for (const [accept, json] of cases) t.equal(prefersJson(accept), json, String(accept))

  t.match(errorPage(599, 'odd <b>'), /<title>599 Error<\/title>[^]*Odd &lt;b&gt;\./)
  t.same([undefined, '', 'Example.ORG.:443', 'a.example', '[::1]:80'].map(hostName), [undefined, undefined, 'example.org', 'a.example', '[::1]'])

  const gone = { socket: { remoteAddress: undefined }, protocol: 'http', host: 'h', principal: null } as unknown as Parameters<typeof upstreamHeaders>[0]
  const headers = upstreamHeaders(gone, { 'x-forwarded-for': '' }, { auth: 'none', trustProxy: true, users: undefined as never }, false)
  t.equal(headers['x-forwarded-for'], 'unknown', 'an empty chain and no peer address')
})

/** One HTTP/2 request (TLS, the gateway's self-signed certificate not checked). */
async function h2 (gw: Gateway, headers: Record<string, string>, body?: Buffer): Promise<{ status: number, headers: Record<string, unknown>, text: string }> {
  const session = http2Connect(gw.url, { servername: 'localhost', rejectUnauthorized: false })
  try {
    const req = session.request(headers)
    req.end(body)
    const [response] = await once(req, 'response') as [Record<string, unknown>]
    let text = ''
    for await (const chunk of req) text += String(chunk)
    return { status: Number(response[':status']), headers: response, text }
  } finally {
    session.close()
  }
}

t.test('over HTTPS and HTTP/2: routes by :authority, X-Forwarded-Proto https, error pages, WebSocket over HTTP/1.1', async (t) => {
  const [light, webui] = await Promise.all([startUpstream(t, echo, { webSocket: true }), startUpstream(t)])
  const gw = await gateway(t, [
    { prefix: '/light', upstream: light.url, auth: 'bearer', bodyLimit: 10 },
    { host: 'webui.example.org', upstream: webui.url, auth: 'none' },
  ], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })

  const page = await h2(gw, { ':path': '/light/app?x=1', ...gw.auth() })
  t.equal(page.status, 200)
  const seen = JSON.parse(page.text).headers
  t.equal(seen['x-forwarded-proto'], 'https')
  t.equal(seen['x-forwarded-host'], `localhost:${new URL(gw.url).port}`, 'the :authority (from the SNI name)')
  t.equal(seen['x-forwarded-user'], 'alice')
  t.notOk(Object.keys(seen).some((name) => name.startsWith(':')), 'no HTTP/2 pseudo-headers upstream')

  const byHost = await h2(gw, { ':path': '/api/version', ':authority': 'webui.example.org' })
  t.equal(JSON.parse(byHost.text).url, '/api/version', 'a host route by :authority')

  const tooLarge = await h2(gw, { ':path': '/light/upload', ':method': 'POST', 'content-length': '11', ...gw.auth(), ...HTML }, Buffer.alloc(11))
  t.equal(tooLarge.status, 413, 'the limit over HTTP/2 too')
  t.match(tooLarge.text, /413 Payload Too Large/)

  const tlsOptions = { headers: gw.auth(), servername: 'localhost', rejectUnauthorized: false }
  const socket = new WebSocket(`${gw.url.replace(/^https/, 'wss')}/light/ws`, tlsOptions)
  t.teardown(() => socket.terminate())
  const [greeting] = await within(once(socket, 'message'), 'no WebSocket over HTTPS') as [Buffer]
  t.equal(String(greeting), 'path /ws')
})
