// Clients too slow to be waited for, as Nginx's client_body_timeout and send_timeout handle them:
// one that trickles its request is answered 408 and cut off (server.requestTimeoutMs); one that
// stops reading its answer is cut off and its backend request aborted (server.sendTimeoutMs), so
// that it cannot hold a backend slot. Answers that are merely long are never limited.
import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { captureLog } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

const TIMEOUT_MS = 400

/**
 * A raw HTTP/1.1 request on its own connection (over TLS for an https gateway), which the test
 * then leaves unread or unfinished.
 */
function rawRequest (gw: Gateway, head: string, body: string): Socket {
  const port = Number(new URL(gw.url).port)
  const send = (): void => { socket.write(`${head}\r\nHost: gw\r\nAuthorization: Bearer ${gw.token()}\r\nContent-Type: application/json\r\n${body}`) }
  const socket: Socket = gw.url.startsWith('https:')
    ? tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, send)
    : connect(port, '127.0.0.1', send)
  return socket
}

/** What the gateway answered to a request that stops halfway through its body, once it closed the connection. */
function unfinishedRequest (gw: Gateway): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let text = ''
    // Headers and the first bytes of a 100-byte body; the rest never comes.
    const socket = rawRequest(gw, 'POST /api/chat HTTP/1.1', 'Content-Length: 100\r\n\r\n{"model":')
    socket.on('data', (d: Buffer) => { text += d.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
}

t.test('a request whose body never completes gets 408 and its connection closed', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { requestTimeoutMs: TIMEOUT_MS }, log: { level: 'info' } }, { logStream: log.stream })
  const chatsBefore = o.requests.filter((r) => r.path === '/api/chat').length
  t.match(await unfinishedRequest(gw), /^HTTP\/1\.1 408 /, '408 Request Timeout, then the connection closes')
  t.equal(o.requests.filter((r) => r.path === '/api/chat').length, chatsBefore, 'nothing reached the backend')
  t.equal((await fetch(`${gw.url}/api/tags`, { headers: gw.auth() })).status, 200, 'the gateway serves on')
  const line = log.text().split('\n').filter((l) => l.includes('"url":"/api/chat"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(line, [{ status: 408, msg: 'request timed out: the client sent it too slowly', user: 'alice' }], 'logged as a timeout, not as a client abort')
})

t.test('over HTTPS (HTTP/1.1 on the HTTP/2 server) too', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { requestTimeoutMs: TIMEOUT_MS }, tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })
  t.match(await unfinishedRequest(gw), /^HTTP\/1\.1 408 /)
})

t.test('an answer that takes longer than the limit is not cut off', async (t) => {
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  o.mode = { gate }
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { requestTimeoutMs: TIMEOUT_MS } })
  const answer = fetch(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }], stream: false }),
  })
  // Several of Node's checks (every TIMEOUT_MS / 4) pass while the backend holds the answer back.
  await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS * 3))
  open()
  const res = await answer
  t.equal(res.status, 200)
  t.match(await res.json(), { done: true, message: { content: 'Hello from llama3.2:latest!' } })
})

t.test('server.requestTimeoutMs: Node\'s 300 s by default on HTTP too, 0 for none', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const byDefault = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }])
  t.equal(byDefault.app.server.requestTimeout, 300_000)
  t.equal(byDefault.app.server.headersTimeout, 60_000)
  const none = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { requestTimeoutMs: 0 } })
  t.equal(none.app.server.requestTimeout, 0)
})

t.test('a client that stops reading its stream is cut off and frees the backend slot', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  // A long answer, in 64 KiB pieces 5 ms apart (20 s in all): the socket buffers between the gateway
  // and the idle reader fill within the first second, and the backend is still writing when the
  // gateway gives up on the client.
  o.mode = { replyTokens: Array.from({ length: 4096 }, () => 'x'.repeat(64 * 1024)), chunkDelayMs: 5 }
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url, maxConcurrent: 1 }],
    { server: { sendTimeoutMs: TIMEOUT_MS }, log: { level: 'info' } }, { logStream: log.stream })
  const body = JSON.stringify({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }] })
  // Sends its request and never reads (no 'data' listener: the socket stops taking bytes).
  const stalled = rawRequest(gw, 'POST /api/chat HTTP/1.1', `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  t.teardown(() => stalled.destroy())
  await o.waitForAborts(1)
  t.pass('the backend request was aborted')
  o.mode = {}
  const next = await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }], stream: false }) })
  t.equal(next.status, 200, 'the only slot (maxConcurrent 1) serves the next chat')
  const lines = log.text().split('\n').filter((l) => l.includes('"url":"/api/chat"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines[0], { status: 499, msg: 'client stopped reading: cut off after server.sendTimeoutMs' })
})

t.test('a slow reader that keeps reading is not cut off', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  // 64 MiB: more than the socket buffers take, so the gateway waits on the reader again and again.
  o.mode = { replyTokens: Array.from({ length: 1024 }, () => 'x'.repeat(64 * 1024)) }
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { sendTimeoutMs: TIMEOUT_MS } })
  const res = await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }] }) })
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let reads = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
    // Every few reads, pause for less than the limit (and far longer than it in all).
    if (++reads % 64 === 0) await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 4))
  }
  const last = JSON.parse(text.trim().split('\n').at(-1)!) as Record<string, unknown>
  t.match(last, { done: true, eval_count: 1024 }, 'the whole stream arrived')
  t.ok(reads / 64 * (TIMEOUT_MS / 4) > 4 * TIMEOUT_MS, 'the reader paused for several times the limit in all')
  t.equal(o.aborts.length, 0)
})
