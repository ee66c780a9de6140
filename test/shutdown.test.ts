import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { connect as http2Connect } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { connect, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { request } from 'undici'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway } from './helpers/gateway.js'

function openSocket (port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
  })
}
const closed = (socket: Socket): Promise<void> => new Promise((resolve) => socket.once('close', () => resolve()))

t.test('closing the gateway drops idle connections at once and lets open streams finish', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }])
  const port = Number(new URL(gw.url).port)

  // A client's spare connection that never sent a request, and a keep-alive one that is idle.
  const unused = await openSocket(port)
  const idle = await openSocket(port)
  idle.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`)
  await new Promise((resolve) => idle.once('data', resolve))
  const unusedClosed = closed(unused)
  const idleClosed = closed(idle)

  // A stream in flight: its first chunk is here, the rest comes after close() began.
  ollama.mode = { chunkDelayMs: 20 }
  const res = await request(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }),
  })
  const iterator = res.body[Symbol.asyncIterator]()
  const first = await iterator.next()
  t.match(String(first.value), /"content":"Hello"/)

  const closing = gw.app.close()
  await unusedClosed
  await idleClosed
  t.pass('the unused and the idle connection were closed without waiting')
  let rest = ''
  for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) rest += String(next.value)
  t.match(rest.trim().split('\n').at(-1), /"done":true/, 'the open stream finished normally')
  await closing
})

t.test('over HTTPS too: idle HTTP/1.1 connections close at once, HTTP/1.1 and HTTP/2 streams finish', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })
  const port = Number(new URL(gw.url).port)
  const tlsOptions = { host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }
  const idle = await new Promise<TLSSocket>((resolve) => { const s = tlsConnect({ ...tlsOptions, ALPNProtocols: ['http/1.1'] }, () => resolve(s)) })
  idle.write(`GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  await new Promise((resolve) => idle.once('data', resolve))
  const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()))

  ollama.mode = { chunkDelayMs: 20 }
  const body = JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
  const h1 = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpsRequest({ ...tlsOptions, path: '/api/chat', method: 'POST', headers: { ...gw.auth(), 'content-type': 'application/json' } }, resolve)
    req.on('error', reject)
    req.end(body)
  })
  const session = http2Connect(gw.url, { servername: 'localhost', rejectUnauthorized: false })
  const h2 = session.request({ ':method': 'POST', ':path': '/api/chat', ...gw.auth(), 'content-type': 'application/json' })
  h2.end(body)
  const read = (stream: NodeJS.ReadableStream): Promise<string> => new Promise((resolve) => {
    let text = ''
    stream.on('data', (d: Buffer) => { text += d.toString() })
    stream.on('end', () => resolve(text))
  })
  const h1Text = read(h1)
  const h2Text = read(h2)
  await new Promise((resolve) => h1.once('readable', resolve))
  await new Promise((resolve) => h2.once('readable', resolve))

  const closing = gw.app.close()
  await idleClosed
  t.pass('the idle HTTPS connection was closed without waiting')
  t.match((await h1Text).trim().split('\n').at(-1), /"done":true/, 'the HTTP/1.1 stream finished')
  t.match((await h2Text).trim().split('\n').at(-1), /"done":true/, 'the HTTP/2 stream finished')
  // The client keeps its HTTP/2 session open: the gateway closes it instead of waiting for the
  // session's idle timeout (72 s).
  const sessionClosed = new Promise<void>((resolve) => session.once('close', () => resolve()))
  const bound = new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000).unref())
  t.equal(await Promise.race([closing.then(() => 'closed'), bound]), 'closed', 'close() does not wait on an idle HTTP/2 session')
  await sessionClosed
})
