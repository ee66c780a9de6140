// Usage records and the process's end, with the real CLI in a child process: SIGTERM writes every
// buffered record (also of a stream still open when the signal came) before the store closes; a
// crash (SIGKILL) keeps what was written, and the WAL store opens fine afterwards.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openDatabase } from '../src/store/database.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { hmacJwt, inOneHour } from './helpers/jwt.js'

const SECRET = 'u'.repeat(40)
const token = (sub: string, role = 'user'): string => hmacJwt({ sub, role, exp: inOneHour() }, SECRET)

interface Server { url: string, child: ChildProcess, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>, output: () => string }

/** `chatgate serve` from source, under the tests' TypeScript loader, with the usage timer far off. */
async function serve (t: Test, backendUrl: string, graceMs = 30_000): Promise<{ server: Server, store: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-usage-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = join(dir, 'data')
  const config = join(dir, 'chatgate.yaml')
  writeFileSync(config, `server: { host: 127.0.0.1, port: 0, shutdownGraceMs: ${graceMs} }\nauth: { jwt: { secret: ${SECRET} } }\nstore: { dir: ${store}, usageFlushMs: 600000 }\n` +
    `backends:\n  - { name: o, type: ollama, url: "${backendUrl}" }\n`)
  const child = spawn(process.execPath, [...process.execArgv, 'src/cli.ts', 'serve', '--config', config])
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  t.teardown(() => { child.kill('SIGKILL') }) // never leave a server behind when an assertion fails
  let output = ''
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  // Keep reading stdout (one log line per request) so that the child never blocks on a full pipe.
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString()
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match !== null) resolve(match[1]!)
    })
    void exited.then(() => reject(new Error(`serve exited early:\n${output}`)))
  })
  return { server: { url, child, exited, output: () => output }, store }
}

/** A chat through the gateway; the prompt has `words` words. Resolves when the answer is read. */
async function chat (url: string, user: string, words: number, path = '/api/chat', stream = false): Promise<void> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token(user)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', stream, messages: [{ role: 'user', content: Array.from({ length: words }, (_, i) => `w${i}`).join(' ') }] }),
  })
  if (res.status !== 200) throw new Error(`chat answered ${res.status}: ${await res.text()}`)
  await res.text()
}

function usageIn (store: string): { count: number, prompt: number, completion: number, statuses: number[] } {
  const db = new Database(join(store, 'chatgate.db'), { readonly: true })
  try {
    const row = db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion FROM usage').get() as { count: number, prompt: number, completion: number }
    return { ...row, statuses: db.prepare('SELECT DISTINCT status FROM usage').pluck().all() as number[] }
  } finally {
    db.close()
  }
}

t.test('SIGTERM: no record is lost, not even of a stream that was still open', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const { server, store } = await serve(t, o.url)
  const N = 30
  let prompt = 0
  // Three kinds side by side: Ollama non-streamed and streamed (passed through), OpenAI streamed (translated).
  const kinds: Array<[string, boolean]> = [['/api/chat', false], ['/api/chat', true], ['/v1/chat/completions', true]]
  for (let batch = 0; batch < N / 10; batch++) {
    await Promise.all(Array.from({ length: 10 }, (_, i) => {
      const words = batch * 10 + i + 1
      prompt += words
      const [path, stream] = kinds[i % 3]!
      return chat(server.url, `user${i % 4}`, words, path, stream)
    }))
  }
  // One more stream, slow, still running when the signal arrives: it finishes, and is counted.
  o.mode = { chunkDelayMs: 150 }
  const res = await fetch(`${server.url}/api/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token('late')}` },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'still streaming' }] }),
  })
  const reader = res.body!.getReader()
  await reader.read() // the first chunk is here: the request is under way
  server.child.kill('SIGTERM')
  let rest = ''
  for (let part = await reader.read(); !part.done; part = await reader.read()) rest += Buffer.from(part.value).toString()
  t.match(rest, /"done":true/, 'the open stream ran to its end')
  t.same(await server.exited, { code: 0, signal: null }, 'exit 0')
  t.same(usageIn(store), { count: N + 1, prompt: prompt + 2, completion: 4 * (N + 1), statuses: [200] }, 'every request, with the tokens the backend reported')
})

/** A stream that takes its time (a chunk every `delayMs`), read up to its first chunk. */
async function slowStream (o: OllamaEmulator, url: string, delayMs: number): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  o.mode = { chunkDelayMs: delayMs }
  const res = await fetch(`${url}/api/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token('slow')}` },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'take your time' }] }),
  })
  const reader = res.body!.getReader()
  await reader.read()
  return reader
}

async function readToEnd (reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = ''
  try {
    for (let part = await reader.read(); !part.done; part = await reader.read()) text += Buffer.from(part.value).toString()
  } catch {
    // Cut off: what came so far.
  }
  return text
}

t.test('SIGTERM: a stream still open when the grace period ends is cut off, recorded, and the exit is 0', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const { server, store } = await serve(t, o.url, 200)
  const reader = await slowStream(o, server.url, 5_000)
  server.child.kill('SIGTERM')
  const text = await readToEnd(reader)
  t.notMatch(text, /"done":true/, 'the stream did not get to finish')
  t.same(await server.exited, { code: 0, signal: null }, 'exit 0')
  const recorded = usageIn(store)
  t.equal(recorded.count, 1, 'its usage is recorded')
  t.same(recorded.statuses, [499], 'as a request the gateway did not finish')
})

t.test('a second SIGTERM exits at once', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const { server } = await serve(t, o.url, 600_000)
  const reader = await slowStream(o, server.url, 5_000)
  server.child.kill('SIGTERM')
  // Two signals sent at once arrive as one: the second goes once the first is being handled.
  while (!server.output().includes('shutting down')) await new Promise((resolve) => setTimeout(resolve, 20))
  server.child.kill('SIGTERM')
  t.same(await server.exited, { code: 1, signal: null }, 'gone without waiting for the stream (exit 1: not a clean stop)')
  await readToEnd(reader)
})

t.test('SIGKILL after a flush: what was written stays, and the store opens fine', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const { server, store } = await serve(t, o.url)
  for (let i = 0; i < 5; i++) await chat(server.url, 'alice', 3)
  // A report writes what waits; these five are now committed to the WAL.
  const report = await fetch(`${server.url}/admin/usage?groupBy=user`, { headers: { authorization: `Bearer ${token('root', 'admin')}` } })
  t.match(await report.json(), { rows: [{ user: 'alice', requests: 5, promptTokens: 15 }] })
  // These three wait for a timer that is ten minutes off: a crash loses them.
  for (let i = 0; i < 3; i++) await chat(server.url, 'bob', 2)
  server.child.kill('SIGKILL')
  t.match(await server.exited, { signal: 'SIGKILL' })
  t.ok(existsSync(join(store, 'chatgate.db-wal')), 'the write-ahead log is there, not yet checkpointed')

  const db = openDatabase(store)
  t.teardown(() => db.close())
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok')
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal')
  t.same(db.prepare('SELECT user, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt, SUM(completion_tokens) AS completion FROM usage GROUP BY user').all(),
    [{ user: 'alice', requests: 5, prompt: 15, completion: 20 }], 'the flushed records, and only those')
})
