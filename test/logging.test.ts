import t from 'tap'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { connect as http2Connect } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { logDestination } from '../src/logging.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway } from './helpers/gateway.js'
import OpenAI, { type APIError } from 'openai'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>>, text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { chunks.push(String(chunk)); done() } })
  const text = (): string => chunks.join('')
  return { stream, text, lines: () => text().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)) }
}

t.test('one line per request with user, model, backend, status, ttft, tokens, duration; no secrets or contents', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const log = capture()
  const gw = await startGateway(t, [{ name: 'gpu1', type: 'ollama', url: ollama.url, apiKey: 'backend-secret-key' }], { log: { level: 'info' } }, { logStream: log.stream })
  const token = gw.token('user', 'alice')
  const secretText = 'my-very-private-question'
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', cookie: 'session=cookie-secret' },
    body: JSON.stringify({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: secretText }] }),
  })
  await res.text()
  await fetch(`${gw.url}/v1/models`, { headers: { authorization: 'Bearer forged.token.value' } })
  await gw.app.close() // the line is written when the connection is done with the request

  const requests = log.lines().filter((l) => l.msg === 'request')
  const chat = requests.find((l) => l.url === '/v1/chat/completions')
  t.ok(chat, 'the chat has its line')
  t.match(chat, { method: 'POST', status: 200, user: 'alice', ip: '127.0.0.1', model: 'llama3.2', backend: 'gpu1', attempts: 1, promptTokens: 1, completionTokens: 4 })
  t.type(chat!.reqId, 'string')
  t.type(chat!.ttftMs, 'number')
  t.type(chat!.durationMs, 'number')
  t.equal(requests.filter((l) => l.url === '/v1/chat/completions').length, 1, 'exactly one line for it')
  t.match(requests.find((l) => l.url === '/v1/models'), { status: 401, ip: '127.0.0.1' }, 'a refused caller has no user name, but an address')
  const all = log.text()
  for (const secret of [token, secretText, 'cookie-secret', 'backend-secret-key', 'forged.token.value']) {
    t.notOk(all.includes(secret), `never logged: ${secret.slice(0, 12)}…`)
  }
})

t.test('every answer carries its log line\'s request id: the openai SDK shows it, successes and errors alike', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const log = capture()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { log: { level: 'info' } }, { logStream: log.stream })
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token(), maxRetries: 0 })
  const answer = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
  const streamed = await openai.chat.completions.create({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'hi' }] }).withResponse()
  for await (const _ of streamed.data) { /* read to the end */ }
  const refused = await openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (err: unknown) => err as APIError)
  if (refused === undefined) throw new Error('an unknown model was answered')
  t.equal(refused.status, 404)
  const other = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }])
  const elsewhere = (await fetch(`${other.url}/healthz`)).headers.get('x-request-id')
  await gw.app.close()
  const ids = [answer._request_id, streamed.request_id, refused.requestID]
  t.match(ids, [/^[0-9a-f]{8}-[0-9a-z]+$/, /^[0-9a-f]{8}-[0-9a-z]+$/, /^[0-9a-f]{8}-[0-9a-z]+$/])
  t.equal(new Set(ids).size, 3)
  const logged = log.lines().filter((l) => l.url === '/v1/chat/completions').map((l) => l.reqId)
  t.same(logged, ids, 'the ids of the log lines, in order')
  t.not(elsewhere!.split('-')[0], ids[0]!.split('-')[0], 'another gateway (a replica, a restart) has other ids')
})

t.test('behind a load balancer (server.trustProxy) the line names the forwarded address', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const log = capture()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { server: { trustProxy: true }, log: { level: 'info' } }, { logStream: log.stream })
  await (await fetch(`${gw.url}/api/tags`, { headers: { ...gw.auth(), 'x-forwarded-for': '203.0.113.9' } })).text()
  await gw.app.close()
  t.match(log.lines().find((l) => l.url === '/api/tags'), { status: 200, ip: '203.0.113.9' })
})

t.test('over HTTP/2 the line names the client address too (the stream has closed by the time it is written)', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const log = capture()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: ollama.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 }, log: { level: 'info' } }, { logStream: log.stream })
  const session = http2Connect(gw.url, { rejectUnauthorized: false, servername: 'localhost' })
  const tags = session.request({ ':method': 'GET', ':path': '/api/tags', authorization: `Bearer ${gw.token()}` })
  tags.resume()
  await new Promise((resolve) => tags.on('end', resolve))
  session.close()
  await gw.app.close()
  t.match(log.lines().find((l) => l.url === '/api/tags'), { status: 200, ip: '127.0.0.1' })
})

t.test('the log destination batches lines, keeps their order and loses none', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-log-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'out.log')
  const fd = openSync(file, 'a')
  t.teardown(() => closeSync(fd))
  const dest = logDestination(fd)
  const lines = Array.from({ length: 300 }, (_, i) => `{"n":${i},"text":"ünïcode ${'x'.repeat(i)}"}\n`)
  const huge = `{"huge":"${'y'.repeat(40_000)}"}\n`
  for (const line of lines.slice(0, 250)) dest.stream.write(line)
  t.ok(readFileSync(file, 'utf8').length > 0, 'a full buffer is written out at once')
  dest.stream.write(huge)
  for (const line of lines.slice(250)) dest.stream.write(line)

  dest.stream.write('{"last":true}\n')
  // The periodic flush writes out a partial buffer without anyone closing the destination.
  for (let i = 0; i < 100 && !readFileSync(file, 'utf8').endsWith('{"last":true}\n'); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(readFileSync(file, 'utf8').endsWith('{"last":true}\n'), 'a partial buffer goes out on the timer')

  dest.stream.write('{"closing":true}\n')
  dest.close()
  t.equal(readFileSync(file, 'utf8'), [...lines.slice(0, 250), huge, ...lines.slice(250), '{"last":true}\n', '{"closing":true}\n'].join(''))
})
