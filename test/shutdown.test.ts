import t from 'tap'
import { connect, type Socket } from 'node:net'
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
