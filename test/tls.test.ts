// HTTPS without an ACME CA: self-signed and manual certificates, SNI, HTTP/2 with HTTP/1.1
// fallback, TLS versions, HSTS, the plain-HTTP listener, hot certificate swaps, bad files.
import t, { type Test } from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect as http2Connect, constants as http2Constants } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import { Agent, fetch as undiciFetch } from 'undici'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { generate } from 'selfsigned'
import { buildApp } from '../src/app.js'
import { validateConfig } from '../src/config/load.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { captureLog } from './helpers/accounts.js'

const MODEL = 'llama3.2:latest'

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function emulator (t: Test): Promise<OllamaEmulator> {
  const o = await OllamaEmulator.start({ models: [MODEL] })
  t.teardown(() => o.close())
  return o
}

function port (gw: Gateway): number {
  return Number(new URL(gw.url).port)
}

/** The certificate the server presents to a new connection asking for `servername`. */
function peerCertificate (gw: Gateway, servername: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: port(gw), servername, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate())
      socket.end()
    })
    socket.on('error', reject)
  })
}

/** undici dispatcher trusting `ca`, speaking h2 when the server offers it. */
const trusting = (ca: string, servername = 'localhost'): Agent => new Agent({ allowH2: true, connect: { ca, servername } })
/** A fetch for the clients that goes through `dispatcher`. */
const fetchVia = (dispatcher: Agent): typeof fetch => ((url: string, init?: object) => undiciFetch(url, { ...init, dispatcher } as never)) as unknown as typeof fetch

async function makePair (names: string[], days = 30): Promise<{ cert: string, key: string }> {
  const made = await generate([{ name: 'commonName', value: names[0] }], {
    keyType: 'ec',
    notBeforeDate: new Date(Date.now() - 60_000),
    notAfterDate: new Date(Date.now() + days * 86_400_000),
    extensions: [{ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2 as const, value })) }],
  })
  return { cert: made.cert, key: made.private }
}

t.test('self-signed: generated once, stored 0600, reused after a restart; h2 and HTTP/1.1; TLS 1.2+ only; HSTS', async (t) => {
  const o = await emulator(t)
  const dir = tempDir(t)
  const tls = { mode: 'self-signed', names: ['localhost', 'chat.lab.test'], httpPort: 0, hsts: { enabled: true, maxAge: 600 } }
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls, store: { dir } })
  const stored = join(dir, 'tls/certificates/self-signed/localhost')
  t.equal(statSync(join(stored, 'key.pem')).mode & 0o777, 0o600, 'key is 0600')
  t.equal(statSync(join(stored, 'cert.pem')).mode & 0o777, 0o600, 'certificate is 0600')
  const served = await peerCertificate(gw, 'chat.lab.test')
  t.match(served.subjectaltname, /DNS:localhost, DNS:chat\.lab\.test/)
  const ca = gw.app.tls!.certificates.status()[0]!
  t.ok(Date.parse(ca.notAfter!) > Date.now() + 300 * 86_400_000, 'valid for a year')

  // HTTP/2 through ALPN, verified against the generated certificate.
  const pem = new X509Certificate(served.raw).toString()
  const session = http2Connect(gw.url, { ca: pem, servername: 'localhost' })
  t.teardown(() => session.close())
  const h2 = await new Promise<{ status: number, hsts: string }>((resolve, reject) => {
    const req = session.request({ ':path': '/healthz' })
    req.on('response', (headers) => resolve({ status: Number(headers[':status']), hsts: String(headers['strict-transport-security']) }))
    req.on('error', reject)
    req.end()
  })
  t.same(h2, { status: 200, hsts: 'max-age=600' })

  // HTTP/1.1 for a client that offers nothing else.
  const res = await fetchVia(new Agent({ connect: { ca: pem, servername: 'localhost' } }))(`${gw.url}/healthz`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('strict-transport-security'), 'max-age=600')

  // TLS 1.1 is refused.
  await t.rejects(new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: port(gw), servername: 'localhost', maxVersion: 'TLSv1.1', minVersion: 'TLSv1', rejectUnauthorized: false }, () => resolve(s))
    s.on('error', reject)
  }))

  // A restart on the same storage serves the same certificate.
  await gw.app.close()
  const again = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls, store: { dir } })
  t.equal((await peerCertificate(again, 'localhost')).fingerprint256, served.fingerprint256, 'the stored certificate is reused')
})

t.test('chat over HTTPS and HTTP/2 with the official clients, streamed and not', async (t) => {
  const o = await emulator(t)
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })
  const pem = new X509Certificate((await peerCertificate(gw, 'localhost')).raw).toString()
  const dispatcher = trusting(pem)
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token(), maxRetries: 0, fetch: fetchVia(dispatcher) })
  const whole = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(whole.choices[0]!.message.content, 'Hello from llama3.2:latest!')
  let streamed = ''
  for await (const chunk of await openai.chat.completions.create({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'hi' }] })) streamed += chunk.choices[0]?.delta.content ?? ''
  t.equal(streamed, 'Hello from llama3.2:latest!')

  const ollama = new Ollama({ host: gw.url, headers: gw.auth(), fetch: fetchVia(dispatcher) })
  let text = ''
  for await (const part of await ollama.chat({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'hi' }] })) text += part.message.content
  t.equal(text, 'Hello from llama3.2:latest!')
  t.equal((await ollama.list()).models[0]!.name, MODEL)
})

t.test('over HTTP/2, a client that leaves mid-stream aborts the backend request at once, and is logged as such', async (t) => {
  const o = await emulator(t)
  // A long answer, 20 ms a piece: the client leaves after the first.
  o.mode = { chunkDelayMs: 20, replyTokens: Array.from({ length: 500 }, (_, i) => `t${i} `) }
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 }, log: { level: 'info' } }, { logStream: log.stream })
  const session = http2Connect(gw.url, { rejectUnauthorized: false, servername: 'localhost' })
  t.teardown(() => { session.destroy() })
  const chat = session.request({ ':method': 'POST', ':path': '/api/chat', authorization: `Bearer ${gw.token()}`, 'content-type': 'application/json' })
  chat.end(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }))
  await new Promise<void>((resolve) => chat.once('data', () => resolve()))
  chat.close(http2Constants.NGHTTP2_CANCEL)
  await o.waitForAborts(1)
  t.equal(o.aborts.length, 1, 'the backend request was aborted')
  session.close()
  await gw.app.close()
  t.match(log.text().split('\n').filter((l) => l.includes('"url":"/api/chat"')).map((l) => JSON.parse(l) as Record<string, unknown>),
    [{ status: 499, msg: 'request aborted by client' }])
})

t.test('the HTTP listener: 308 to HTTPS keeping host, path and query; ACME challenges answered from storage', async (t) => {
  const o = await emulator(t)
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })
  const httpPort = (gw.app.tls!.httpListener.address() as { port: number }).port
  const get = (path: string, host?: string | null): Promise<{ status: number, location?: string, body: string }> => new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: httpPort, path, method: 'POST', setHost: host !== null, headers: host === undefined || host === null ? {} : { host } }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.same(await get('/v1/models?limit=2&x=%20y', 'chat.lab.test:8080'), { status: 308, location: `https://chat.lab.test:${port(gw)}/v1/models?limit=2&x=%20y`, body: '' })
  gw.app.tls!.certificates.storage.write('challenges/tok-123', 'tok-123.thumbprint')
  t.same(await get('/.well-known/acme-challenge/tok-123'), { status: 200, location: undefined, body: 'tok-123.thumbprint' })
  t.equal((await get('/.well-known/acme-challenge/unknown')).status, 404)
  t.equal((await get('/v1/models', null)).status, 400, 'no Host header: nowhere to redirect to')
  t.match(await get('/v1/models', ':8080'), { status: 400, body: /Host header is required/ }, 'a Host without a name')
  t.equal((await get('/.well-known/acme-challenge/..%2f..%2fjwt-secret')).status, 404, 'no path tricks into the storage')
})

t.test('manual: files re-read on change; new connections get the new certificate while an open stream goes on; a bad file keeps the old one', async (t) => {
  const o = await emulator(t)
  const dir = tempDir(t)
  const certFile = join(dir, 'fullchain.pem')
  const keyFile = join(dir, 'privkey.pem')
  const first = await makePair(['localhost'])
  writeFileSync(certFile, first.cert)
  writeFileSync(keyFile, first.key)
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'manual', certificates: [{ certFile, keyFile }], httpPort: 0 } })
  const before = await peerCertificate(gw, 'localhost')
  t.equal(before.fingerprint256, new X509Certificate(first.cert).fingerprint256)

  // An open stream on the old certificate.
  o.mode = { chunkDelayMs: 50 }
  const oldTrust = trusting(first.cert)
  const streaming = fetchVia(oldTrust)(`${gw.url}/api/chat`, { method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }) })
  const res = await streaming
  const reader = res.body!.getReader()
  const firstChunk = await reader.read()
  t.notOk(firstChunk.done, 'the stream has begun')

  const second = await makePair(['localhost'])
  writeFileSync(keyFile, second.key)
  writeFileSync(certFile, second.cert)
  const next = new X509Certificate(second.cert).fingerprint256
  let seen = ''
  for (let i = 0; i < 100 && seen !== next; i++) {
    seen = (await peerCertificate(gw, 'localhost')).fingerprint256
    if (seen !== next) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(seen, next, 'a new connection gets the new certificate')
  let rest = ''
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString()
  t.match(rest, /"done":true/, 'the stream opened before the swap finished on its connection')

  // A malformed file: the previous certificate stays in service.
  writeFileSync(certFile, 'not a certificate')
  gw.app.tls!.certificates.reload()
  t.equal((await peerCertificate(gw, 'localhost')).fingerprint256, next, 'still serving the last good certificate')
  t.match(gw.app.tls!.certificates.status()[0], { lastError: /no PEM certificate/ })
})

t.test('manual: a key that does not match, or an unreadable file, stops the start with a clear message', async (t) => {
  const dir = tempDir(t)
  const a = await makePair(['localhost'])
  const b = await makePair(['localhost'])
  writeFileSync(join(dir, 'cert.pem'), a.cert)
  writeFileSync(join(dir, 'key.pem'), b.key)
  const config = (certFile: string, keyFile: string): ReturnType<typeof validateConfig> => validateConfig({
    server: { port: 0 }, store: { dir }, log: { level: 'silent' }, backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:9' }],
    tls: { mode: 'manual', certificates: [{ certFile, keyFile }], httpPort: 0 },
  })
  await t.rejects(buildApp(config(join(dir, 'cert.pem'), join(dir, 'key.pem')), { discovery: false }), /private key does not belong to the certificate/)
  await t.rejects(buildApp(config(join(dir, 'missing.pem'), join(dir, 'key.pem')), { discovery: false }), /ENOENT|no such file/)
})

t.test('a client that sends no server name (a probe by IP address) gets the first certificate', async (t) => {
  const o = await emulator(t)
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['chat.lab.test', 'other.lab.test'], httpPort: 0 } })
  const port = Number(new URL(gw.url).port)
  const peer = await new Promise<PeerCertificate>((resolve, reject) => {
    // An IP address as host: Node sends no SNI.
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      resolve(socket.getPeerCertificate())
      socket.end()
    })
    socket.on('error', reject)
  })
  t.match(peer.subjectaltname, /DNS:chat\.lab\.test/)
  const noName = new Agent({ connect: { rejectUnauthorized: false } })
  t.teardown(() => noName.close())
  const res = await undiciFetch(`https://127.0.0.1:${port}/healthz`, { dispatcher: noName })
  t.equal(res.status, 200, 'a health probe by IP address works')
})

t.test('without TLS, /admin/tls says so', async (t) => {
  const o = await emulator(t)
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }])
  const res = await fetch(`${gw.url}/admin/tls`, { headers: gw.auth('admin') })
  t.same(await res.json(), { mode: 'off', certificates: [] })
})

t.test('config: certificate names and TLS modes are checked at load', async (t) => {
  const base = { backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:9' }] }
  const problems = (tls: object): string => {
    try {
      validateConfig({ ...base, tls })
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  t.match(problems({ mode: 'acme', names: ['10.0.0.1'] }), /tls\.names\[0\]: "10\.0\.0\.1" is an IP address/)
  t.match(problems({ mode: 'acme', names: ['bad_name.example.org'] }), /not a valid DNS name/)
  t.match(problems({ mode: 'acme', names: ['a.*.example.org'] }), /wildcard must be the whole leftmost label/)
  t.match(problems({ mode: 'acme', names: ['intranet'] }), /needs a domain/)
  t.match(problems({ mode: 'acme', names: ['*.example.org'] }), /needs tls\.acme\.challenge: dns-01/)
  t.match(problems({ mode: 'acme', names: ['*.example.org'], acme: { challenge: 'dns-01' } }), /tls\.acme\.dnsHook: dns-01 needs/)
  t.match(problems({ mode: 'manual' }), /tls\.certificates: manual mode needs/)
  t.match(problems({ mode: 'manual', certificates: [{ names: ['x.example.org'] }] }), /manual mode needs certFile and keyFile/)
  t.match(problems({ mode: 'self-signed' }), /tls\.names: self-signed mode needs the names/)
  t.match(problems({ mode: 'sometimes' }), /tls\.mode/)
  t.equal(problems({ mode: 'self-signed', names: ['intranet', 'localhost'] }), '', 'single labels are fine for self-signed')
  t.equal(problems({ mode: 'acme', names: ['chat.example.org', '*.lab.example.org'], acme: { challenge: 'dns-01', dnsHook: '/usr/local/bin/dns-hook' } }), '')
})
