// ACME against a real CA: Pebble (Let's Encrypt's test server) with pebble-challtestsrv as its DNS.
// ChatGate trusts Pebble's HTTPS through tls.acme.caFile, and the tests trust the issued chains
// through Pebble's roots; verification is never turned off. acme-client's own pre-check
// (tls.acme.selfCheck) would resolve the fake names with the system resolver, so it is off here:
// Pebble's validation is the real check.
import t, { type Test } from 'tap'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import { Agent, fetch as undiciFetch } from 'undici'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { startPebble, type Pebble, type PebbleOptions } from './helpers/pebble.js'

const NAME = 'chat.example.test'

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-acme-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Log lines of a gateway, to count orders. */
function capture (): { stream: Writable, messages: () => string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done() } })
  return { stream, messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) }
}

interface Setup { o: OllamaEmulator, pebble: Pebble, dir: string }

async function setup (t: Test, validityPeriodSeconds?: number, options: PebbleOptions = {}): Promise<Setup> {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const pebble = await startPebble(t, { ...options, ...(validityPeriodSeconds !== undefined && { validityPeriodSeconds }) })
  const dir = tempDir(t)
  writeFileSync(join(dir, 'pebble-https.pem'), pebble.tlsCa)
  return { o, pebble, dir }
}

function acmeTls (s: Setup, extra: Record<string, unknown> = {}, acme: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    mode: 'acme',
    names: [NAME],
    email: 'admin@example.test',
    httpPort: s.pebble.httpPort,
    acme: { directoryUrl: s.pebble.directoryUrl, caFile: join(s.dir, 'pebble-https.pem'), selfCheck: false, renewCheckIntervalMs: 1000, retryMinMs: 200, retryMaxMs: 2000, ...acme },
    ...extra,
  }
}

async function gateway (t: Test, s: Setup, tls: Record<string, unknown>, log = capture()): Promise<Gateway> {
  return startGateway(t, [{ name: 'o', type: 'ollama', url: s.o.url }], { tls, store: { dir: join(s.dir, 'store') }, log: { level: 'info' } }, { logStream: log.stream })
}

/** A new verified TLS connection to the gateway as `servername`, trusting only Pebble's roots. */
function verifiedPeer (gw: Gateway, pebble: Pebble, servername = NAME): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(gw.url).port), servername, ca: pebble.caBundle }, () => {
      resolve(socket.getPeerCertificate())
      socket.end()
    })
    socket.on('error', reject)
  })
}

/**
 * The certificate the gateway serves, checked against Pebble's roots except for its dates (a
 * slow machine may take the short-lived test certificate past its end): the error, if any.
 */
function servedPeer (gw: Gateway, pebble: Pebble, servername = NAME): Promise<{ peer: PeerCertificate, problem: string | null }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(gw.url).port), servername, ca: pebble.caBundle, rejectUnauthorized: false }, () => {
      const error = socket.authorizationError as unknown as { code?: string } | string | null
      resolve({ peer: socket.getPeerCertificate(), problem: error === null ? null : typeof error === 'string' ? error : error.code ?? String(error) })
      socket.end()
    })
    socket.on('error', reject)
  })
}

const fetchVerified = (pebble: Pebble, servername = NAME): typeof fetch =>
  ((url: string, init?: object) => undiciFetch(url, { ...init, dispatcher: new Agent({ connect: { ca: pebble.caBundle, servername } }) } as never)) as unknown as typeof fetch

t.test('HTTP-01: first issuance, a real HTTPS chat verified against Pebble\'s root, and a restart that reuses the certificate', async (t) => {
  const s = await setup(t)
  const log = capture()
  const gw = await gateway(t, s, acmeTls(s), log)
  const peer = await verifiedPeer(gw, s.pebble)
  t.match(peer.subjectaltname, `DNS:${NAME}`)
  const res = await fetchVerified(s.pebble)(`${gw.url}/api/chat`, {
    method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'hi' }] }),
  })
  t.equal(res.status, 200)
  t.match(await res.json(), { message: { content: 'Hello from llama3.2:latest!' } })
  t.equal(log.messages().filter((m) => m === 'certificate issued').length, 1)
  const status = gw.app.tls!.certificates.status()[0]!
  t.ok(Date.parse(status.renewAt!) < Date.parse(status.notAfter!), 'the renewal time is before expiry')
  // Admins see the expiry coming.
  const admin = await fetchVerified(s.pebble)(`${gw.url}/admin/tls`, { headers: gw.auth('admin') })
  t.match(await admin.json(), { mode: 'acme', certificates: [{ names: [NAME], notAfter: status.notAfter, renewAt: status.renewAt, failures: 0 }] })
  t.equal((await fetchVerified(s.pebble)(`${gw.url}/admin/tls`, { headers: gw.auth('user') })).status, 403)

  await gw.app.close()
  const restartLog = capture()
  const again = await gateway(t, s, acmeTls(s), restartLog)
  t.equal((await verifiedPeer(again, s.pebble)).fingerprint256, peer.fingerprint256, 'the stored certificate is served again')
  t.notOk(restartLog.messages().includes('certificate issued'), 'and nothing was re-ordered')
})

t.test('DNS-01 through the admin\'s hook: a wildcard certificate', async (t) => {
  const s = await setup(t)
  // The hook as an admin would write it for their DNS provider; here the provider is challtestsrv.
  const hook = join(s.dir, 'dns-hook.mjs')
  writeFileSync(hook, `#!/usr/bin/env node
const [action, name, value] = process.argv.slice(2)
const path = action === 'present' ? '/set-txt' : '/clear-txt'
const res = await fetch(${JSON.stringify(s.pebble.challtestsrvUrl)} + path, { method: 'POST', body: JSON.stringify({ host: name + '.', value }) })
if (!res.ok) process.exit(1)
`)
  chmodSync(hook, 0o755)
  const gw = await gateway(t, s, acmeTls(s, { names: ['*.lab.example.test'] }, { challenge: 'dns-01', dnsHook: hook }))
  const peer = await verifiedPeer(gw, s.pebble, 'gpu1.lab.example.test')
  t.match(peer.subjectaltname, 'DNS:*.lab.example.test')
})

t.test('renewal: a short-lived certificate is renewed and served to new connections while an old stream goes on', async (t) => {
  const s = await setup(t, 30)
  const log = capture()
  const gw = await gateway(t, s, acmeTls(s), log)
  const first = await verifiedPeer(gw, s.pebble)

  s.o.mode = { chunkDelayMs: 200 }
  const res = await fetchVerified(s.pebble)(`${gw.url}/api/chat`, {
    method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }),
  })
  const reader = res.body!.getReader()
  t.notOk((await reader.read()).done, 'the stream has begun on the first certificate')

  // Renewal starts once a third of the 30 s lifetime is left; poll new connections until it is served.
  let seen = first.fingerprint256
  for (let i = 0; i < 120 && seen === first.fingerprint256; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    seen = (await verifiedPeer(gw, s.pebble)).fingerprint256
  }
  t.not(seen, first.fingerprint256, 'a new connection gets the renewed certificate')
  t.ok(log.messages().filter((m) => m === 'certificate issued').length >= 2)
  let rest = ''
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString()
  t.match(rest, /"done":true/, 'the stream opened before the renewal finished')
})

t.test('CA unreachable: the current certificate stays in service and retries back off', async (t) => {
  // Renewal is due after 24 s; the failures come within a second or two of that, well before expiry.
  const s = await setup(t, 36)
  const gw = await gateway(t, s, acmeTls(s))
  const peer = await verifiedPeer(gw, s.pebble)
  await s.pebble.stop()
  const certificates = gw.app.tls!.certificates
  // Past the renewal point every attempt fails; the wait before the next one grows each time.
  const waits = new Map<number, number>()
  for (let i = 0; i < 600 && waits.size < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const status = certificates.status()[0]!
    if (status.failures > 0 && !waits.has(status.failures)) waits.set(status.failures, Date.parse(status.nextAttemptAt!) - Date.now())
  }
  const [w1, w2, w3] = [...waits.values()]
  t.ok(w1 !== undefined && w2 !== undefined && w3 !== undefined, 'three failed attempts')
  t.ok(w3! > w1!, `the waits grow (${[...waits.values()].join(', ')} ms)`)
  t.match(certificates.status()[0], { lastError: String })
  const still = await servedPeer(gw, s.pebble)
  t.equal(still.peer.fingerprint256, peer.fingerprint256, 'still serving the certificate it had')
  t.ok(still.problem === null || still.problem === 'CERT_HAS_EXPIRED', `issued by Pebble (${still.problem ?? 'valid'})`)
})

t.test('two instances on one storage directory order once', async (t) => {
  const s = await setup(t)
  const logs = [capture(), capture()]
  // Only the first listens where Pebble validates: whichever instance orders, the answer comes from
  // the shared storage, the way a load balancer sends the CA to any replica.
  const [a, b] = await Promise.all(logs.map((log, i) => gateway(t, s, acmeTls(s, { httpPort: i === 0 ? s.pebble.httpPort : 0 }), log)))
  t.equal((await verifiedPeer(a!, s.pebble)).fingerprint256, (await verifiedPeer(b!, s.pebble)).fingerprint256)
  t.equal(logs.flatMap((l) => l.messages()).filter((m) => m === 'certificate issued').length, 1, 'one order between them')
})

t.test('bad input: a CA that refuses, an unreadable storage directory', async (t) => {
  const s = await setup(t)
  const log = capture()
  // The CA cannot validate: nothing answers on Pebble's HTTP-01 port.
  const gw = await gateway(t, s, acmeTls(s, { httpPort: 0 }), log)
  const status = gw.app.tls!.certificates.status()[0]!
  t.match(status, { lastError: String }, 'the failure is reported')
  t.notOk(status.notAfter, 'and there is no certificate')
  t.ok(log.messages().includes('cannot obtain a certificate'))
  await gw.app.close()

  // A certificate storage that cannot be written (a file is in the way).
  const store = join(s.dir, 'blocked')
  mkdirSync(store)
  writeFileSync(join(store, 'tls'), '')
  await t.rejects(startGateway(t, [{ name: 'o', type: 'ollama', url: s.o.url }], { tls: acmeTls(s), store: { dir: store } }), /tls: cannot use the certificate storage .*blocked\/tls/)
})

t.test('External Account Binding for a CA that requires it', async (t) => {
  const hmacKey = Buffer.from('an-hmac-key-of-thirty-two-bytes!').toString('base64url')
  const s = await setup(t, undefined, { eabKeys: { 'kid-1': hmacKey } })
  const without = await gateway(t, s, acmeTls(s))
  t.match(without.app.tls!.certificates.status()[0], { lastError: /externalAccountBinding/ }, 'the CA says what is missing')
  await without.app.close()
  const bound = await gateway(t, s, acmeTls(s, {}, { eab: { kid: 'kid-1', hmacKey } }))
  t.match((await verifiedPeer(bound, s.pebble)).subjectaltname, `DNS:${NAME}`)
})

t.test('several certificates: each connection gets the one for its SNI', async (t) => {
  const s = await setup(t)
  const gw = await gateway(t, s, acmeTls(s, { certificates: [{ names: ['api.example.test'] }] }))
  t.match((await verifiedPeer(gw, s.pebble, NAME)).subjectaltname, `DNS:${NAME}`)
  const api = await verifiedPeer(gw, s.pebble, 'api.example.test')
  t.equal(api.subjectaltname, 'DNS:api.example.test')
})
