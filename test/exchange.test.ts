import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { Pool } from 'undici'
import { exchange } from '../src/backends/exchange.js'
import { ClientGone } from '../src/relay/client-stream.js'
import { startGateway } from './helpers/gateway.js'

// The chat path's upstream client: bodies handed over chunk by chunk, with backpressure, failures
// and aborts reported where the relay reads them.

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function serve (t: Test, handler: Handler): Promise<{ url: string, closed: Promise<void> }> {
  let closed!: () => void
  const done = new Promise<void>((resolve) => { closed = resolve })
  const server = createServer((req, res) => {
    res.on('close', closed)
    handler(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, closed: done }
}

function pool (t: Test, url: string): Pool {
  const p = new Pool(url)
  t.teardown(() => p.destroy())
  return p
}

/** A promise the test resolves by hand, so the server's next step waits on the test, not a timer. */
function gate (): { open: () => void, opened: Promise<void> } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => { open = resolve })
  return { open, opened }
}

t.test('text() waits for a body that arrives in pieces', async (t) => {
  const second = gate()
  const { url } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"a":')
    void second.opened.then(() => res.end('1}'))
  })
  const res = await exchange(pool(t, url), { method: 'GET', path: '/' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/json')
  const text = res.body.text()
  second.open()
  t.equal(await text, '{"a":1}')
})

t.test('a body cut off mid-way fails text() and the iteration after the bytes that came', async (t) => {
  const { url } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '100' })
    res.write('first piece', () => res.destroy())
  })
  const whole = await exchange(pool(t, url), { method: 'GET', path: '/' })
  await t.rejects(whole.body.text())

  const streamed = await exchange(pool(t, url), { method: 'GET', path: '/' })
  const seen: string[] = []
  await t.rejects((async () => { for await (const chunk of streamed.body) seen.push(chunk.toString()) })())
  t.equal(seen.join(''), 'first piece')
})

t.test('a large body read slowly arrives whole and in order (the socket pauses and resumes)', async (t) => {
  const piece = Buffer.alloc(16 * 1024)
  const pieces = 64
  const { url } = await serve(t, (_req, res) => {
    res.writeHead(200)
    let i = 0
    const more = (): void => {
      while (i < pieces) {
        const ok = res.write(piece.fill(i % 256))
        i += 1
        if (!ok) { res.once('drain', more); return }
      }
      res.end()
    }
    more()
  })
  const res = await exchange(pool(t, url), { method: 'GET', path: '/' })
  const received: Buffer[] = []
  for await (const chunk of res.body) {
    received.push(chunk)
    await new Promise((resolve) => setImmediate(resolve))
  }
  const all = Buffer.concat(received)
  t.equal(all.length, piece.length * pieces)
  t.equal(all[0], 0)
  t.equal(all[all.length - 1], (pieces - 1) % 256)
  t.ok(all.subarray(piece.length * 5, piece.length * 6).every((b) => b === 5), 'pieces stay in order')
})

t.test('a signal aborts the request before it starts and in the middle of the body', async (t) => {
  const { url, closed } = await serve(t, (_req, res) => {
    res.writeHead(200)
    res.write('partial')
  })
  const early = new ClientGone()
  early.aborted = true
  await t.rejects(exchange(pool(t, url), { method: 'GET', path: '/' }, early), { name: 'AbortError' })

  const late = new ClientGone()
  const res = await exchange(pool(t, url), { method: 'GET', path: '/' }, late)
  const reading = (async () => { for await (const chunk of res.body) if (chunk.length > 0) late.emit('abort') })()
  await t.rejects(reading, { name: 'AbortError' })
  await closed
  t.equal(late.listenerCount('abort'), 0, 'the abort listener is gone once the request ended')
})

t.test('a non-streamed answer cut off mid-body is a 502 in the caller\'s protocol', async (t) => {
  const model = 'llama3.2:latest'
  const { url } = await serve(t, (req, res) => {
    res.setHeader('content-type', 'application/json; charset=utf-8')
    if (req.url === '/api/tags') return res.end(JSON.stringify({ models: [{ name: model, model }] }))
    if (req.url === '/api/ps') return res.end(JSON.stringify({ models: [] }))
    if (req.url === '/api/version') return res.end(JSON.stringify({ version: '0.12.0' }))
    res.writeHead(200, { 'content-length': '400' })
    res.write(`{"model":"${model}","message":{"role":"assistant","content":"Hel`, () => res.destroy())
  })
  const body = JSON.stringify({ model, stream: false, messages: [{ role: 'user', content: 'hi' }] })
  // A gateway each: the failure marks the backend down for a while.
  const ask = async (path: string): Promise<Response> => {
    const gw = await startGateway(t, [{ name: 'cut', type: 'ollama', url }])
    return fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' }, body })
  }

  const ollama = await ask('/api/chat')
  t.equal(ollama.status, 502)
  t.match(await ollama.json(), { error: /backend cut/ })

  const openai = await ask('/v1/chat/completions')
  t.equal(openai.status, 502)
  t.match(await openai.json(), { error: { message: /backend cut/, type: String } })
})
