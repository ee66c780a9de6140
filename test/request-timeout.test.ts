// server.requestTimeoutMs: a client that trickles its request is answered 408 and cut off, so that
// slow senders cannot hold connections open for ever; answers, however long, are never limited.
import { connect } from 'node:net'
import t from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { captureLog } from './helpers/accounts.js'
import { startGateway } from './helpers/gateway.js'

const TIMEOUT_MS = 400

t.test('a request whose body never completes gets 408 and its connection closed', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { requestTimeoutMs: TIMEOUT_MS }, log: { level: 'info' } }, { logStream: log.stream })
  const chatsBefore = o.requests.filter((r) => r.path === '/api/chat').length
  const { port } = new URL(gw.url)
  const answer = await new Promise<string>((resolve, reject) => {
    let text = ''
    const socket = connect(Number(port), '127.0.0.1', () => {
      // Headers and the first bytes of a 100-byte body; the rest never comes.
      socket.write(`POST /api/chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${gw.token()}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":`)
    })
    socket.on('data', (d: Buffer) => { text += d.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
  t.match(answer, /^HTTP\/1\.1 408 /, '408 Request Timeout, then the connection closes')
  t.equal(o.requests.filter((r) => r.path === '/api/chat').length, chatsBefore, 'nothing reached the backend')
  t.equal((await fetch(`${gw.url}/api/tags`, { headers: gw.auth() })).status, 200, 'the gateway serves on')
  const line = log.text().split('\n').filter((l) => l.includes('"url":"/api/chat"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(line, [{ status: 408, msg: 'request timed out: the client sent it too slowly', user: 'alice' }], 'logged as a timeout, not as a client abort')
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
