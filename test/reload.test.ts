// Config reload: POST /admin/reload, a change of the file, SIGHUP. A valid file is swapped in at
// once while streams run on; an invalid one changes nothing and says why.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { stringify } from 'yaml'
import { buildApp } from '../src/app.js'
import { hashPassword } from '../src/auth/passwords.js'
import { loadConfig } from '../src/config/load.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { hmacJwt, inOneHour } from './helpers/jwt.js'

const SECRET = 'r'.repeat(40)

interface FileGateway { app: FastifyInstance, url: string, file: string, write: (raw: object) => void, admin: Record<string, string>, user: Record<string, string> }

/** A gateway started from a YAML file in a directory of its own (`file` may be given, as a link). */
async function fromFile (t: Test, raw: object, file?: string): Promise<FileGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-reload-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = file ?? join(dir, 'chatgate.yaml')
  const write = (next: object): void => writeFileSync(path, stringify({ ...next, store: { dir: join(dir, 'data') } }))
  if (file === undefined) write(raw)
  const app = await buildApp(loadConfig(path), { discovery: false, configFile: path })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  await app.gateway.pool.refresh()
  const bearer = (sub: string, role: string): Record<string, string> => ({ authorization: `Bearer ${hmacJwt({ sub, role, exp: inOneHour() }, SECRET)}` })
  return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, file: path, write, admin: bearer('root', 'admin'), user: bearer('alice', 'user') }
}

const base = (backends: object[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  server: { host: '127.0.0.1', port: 0, watchConfig: false },
  auth: { jwt: { secret: SECRET } },
  log: { level: 'silent' },
  routing: { discoveryIntervalMs: 60_000 },
  backends,
  ...extra,
})

async function post (gw: FileGateway, path: string, headers: Record<string, string>, body?: object): Promise<{ status: number, json: any }> {
  const res = await fetch(`${gw.url}${path}`, body === undefined
    ? { method: 'POST', headers }
    : { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

const reload = (gw: FileGateway): Promise<{ status: number, json: any }> => post(gw, '/admin/reload', gw.admin)
const chat = (gw: FileGateway, model = 'llama3.2', headers = gw.user): Promise<{ status: number, json: any }> =>
  post(gw, '/api/chat', headers, { model, stream: false, messages: [{ role: 'user', content: 'hi' }] })

const chatRequests = (o: OllamaEmulator): number => o.requests.filter((r) => r.path === '/api/chat').length

t.test('100 reloads while 50 streams run: every stream finishes where it started, new chats follow the config', async (t) => {
  const [a, b] = await Promise.all([OllamaEmulator.start(), OllamaEmulator.start()])
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const onA = base([{ name: 'a', type: 'ollama', url: a.url, maxConcurrent: 60 }])
  const onB = base([{ name: 'b', type: 'ollama', url: b.url, maxConcurrent: 60 }])
  const gw = await fromFile(t, onA)
  const first = gw.app.gateway.pool.byName('a')!

  // 50 streams of 40 pieces, 10 ms apart: each is mid-answer when the reloads start.
  const words = Array.from({ length: 40 }, (_, i) => ` w${i}`)
  a.mode = { replyTokens: words, chunkDelayMs: 10 }
  const streams = await Promise.all(Array.from({ length: 50 }, async () => {
    const res = await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...gw.user, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }) })
    const reader = res.body!.getReader()
    const head = await reader.read()
    return { status: res.status, reader, text: new TextDecoder().decode(head.value) }
  }))
  t.equal(first.inFlight, 50, 'all 50 streams run on backend a')
  const finished = Promise.all(streams.map(async (s) => {
    for (let next = await s.reader.read(); next.done !== true; next = await s.reader.read()) s.text += new TextDecoder().decode(next.value)
    return s
  }))

  const misrouted: string[] = []
  for (let i = 0; i < 100; i++) {
    const toB = i % 2 === 0
    gw.write(toB ? onB : onA)
    const answer = await reload(gw)
    if (answer.status !== 200 || answer.json.ok !== true) misrouted.push(`reload ${i}: ${answer.status} ${JSON.stringify(answer.json)}`)
    if (i % 10 === 0 || i === 99) {
      // The very next chat goes where the new config says.
      const [beforeA, beforeB] = [chatRequests(a), chatRequests(b)]
      const answer = await chat(gw)
      if (answer.status !== 200) misrouted.push(`chat after reload ${i}: ${answer.status}`)
      if (chatRequests(toB ? b : a) !== (toB ? beforeB : beforeA) + 1) misrouted.push(`chat after reload ${i} did not go to ${toB ? 'b' : 'a'}`)
    }
  }
  t.same(misrouted, [], 'every reload applied and every chat went to the backend of the config it was sent under')
  t.equal(gw.app.reloads.succeeded, 100)

  const done = await finished
  const expected = words.join('')
  const broken = done.filter((s) => {
    const lines = s.text.trim().split('\n').map((l) => JSON.parse(l) as { done?: boolean, error?: string, message?: { content: string } })
    return s.status !== 200 || lines.at(-1)?.done !== true || lines.some((l) => l.error !== undefined) ||
      lines.map((l) => l.message?.content ?? '').join('') !== expected
  })
  t.equal(broken.length, 0, 'all 50 streams ended with done and their whole answer')
  t.equal(a.aborts.length, 0, 'no stream was cut off upstream')
  t.equal(first.inFlight, 0)
  t.ok(first.retired, 'the backend removed by the first reload took no new chats')
  await t.resolves(async () => { while (!first.dispatcher.closed) await new Promise((resolve) => setImmediate(resolve)) }, 'and closed once its streams had ended')
  t.not(gw.app.gateway.pool.byName('a'), first, 'backend a came back as a new backend')
})

t.test('chats waiting for a slot when a reload removes their backend: served by the new one, or told the model is gone', async (t) => {
  const [a, b, c] = await Promise.all([OllamaEmulator.start(), OllamaEmulator.start(), OllamaEmulator.start({ models: ['qwen3:8b'] })])
  t.teardown(() => Promise.all([a.close(), b.close(), c.close()]))
  const gw = await fromFile(t, base([{ name: 'a', type: 'ollama', url: a.url, maxConcurrent: 1 }]))
  const queued = async (): Promise<void> => { while (gw.app.gateway.pool.queueDepths().size === 0) await new Promise((resolve) => setTimeout(resolve, 5)) }
  const gate = (o: OllamaEmulator): () => void => {
    let open!: () => void
    o.mode = { gate: new Promise((resolve) => { open = resolve }) }
    return () => open()
  }

  const openA = gate(a)
  const holdingA = chat(gw)
  await a.waitForRequests(1, '/api/chat')
  const waiting = chat(gw)
  await queued()
  gw.write(base([{ name: 'b', type: 'ollama', url: b.url, maxConcurrent: 1 }]))
  t.equal((await reload(gw)).status, 200)
  t.equal((await waiting).status, 200, 'the chat waiting for a slot on the removed backend went to the new one')
  t.equal(chatRequests(b), 1)

  const openB = gate(b)
  const holdingB = chat(gw)
  await b.waitForRequests(2, '/api/chat')
  const orphan = chat(gw)
  await queued()
  gw.write(base([{ name: 'c', type: 'ollama', url: c.url }]))
  t.equal((await reload(gw)).status, 200)
  const gone = await orphan
  t.equal(gone.status, 404, 'a chat waiting for a model the new config does not serve is told at once')
  t.match(gone.json.error, /model 'llama3.2' not found/)

  openA()
  openB()
  t.equal((await holdingA).status, 200, 'the chats holding slots finished on their backends')
  t.equal((await holdingB).status, 200)
})

t.test('an invalid file is refused with every problem, and the running config keeps serving', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const good = base([{ name: 'o', type: 'ollama', url: o.url }])
  const gw = await fromFile(t, good)

  gw.write({ ...good, backends: [{ name: 'o', type: 'ollama', url: 'not a url' }], routing: { retries: -1 }, colour: 'blue' })
  const refused = await reload(gw)
  t.equal(refused.status, 422)
  t.equal(refused.json.error.code, 'invalid_config')
  t.match(refused.json.error.message, /running config stays/)
  const problems: string[] = refused.json.reload.problems
  for (const where of ['backends[0].url', 'routing.retries', 'colour']) t.ok(problems.some((p) => p.startsWith(`${where}:`)), `names ${where}`)
  t.equal((await chat(gw)).status, 200, 'chats still go to the running backend')
  t.equal(gw.app.gateway.pool.backends[0]!.config.url, o.url)

  writeFileSync(gw.file, 'backends: [ {name: o\n')
  const yaml = await reload(gw)
  t.equal(yaml.status, 422)
  t.match(yaml.json.reload.problems[0], /^YAML: /)
  unlinkSync(gw.file)
  const gone = await reload(gw)
  t.match(gone.json.reload.problems[0], /^cannot read file: /)
  t.match(gw.app.reloads, { succeeded: 0, failed: 3, last: { ok: false, trigger: 'api' } })
  t.equal((await chat(gw)).status, 200, 'still serving')
  const metrics = await (await fetch(`${gw.url}/metrics`, { headers: gw.admin })).text()
  t.match(metrics, /^chatgate_config_reloads_total\{result="failure"\} 3$/m, 'the metrics count the refusals')
  t.match(metrics, /^chatgate_config_last_reload_successful 0$/m)

  t.equal((await post(gw, '/admin/reload', gw.user)).status, 403, 'users may not reload')
  t.equal((await post(gw, '/admin/reload', {})).status, 401)
})

t.test('limits, model access, aliases and config users apply at once; what needs a restart is named', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest', 'qwen3:8b'] })
  t.teardown(() => o.close())
  const before = base([{ name: 'o', type: 'ollama', url: o.url, maxConcurrent: 1 }])
  const gw = await fromFile(t, before)
  const backend = gw.app.gateway.pool.byName('o')!
  const port = new URL(gw.url).port
  t.equal((await chat(gw, 'qwen3:8b')).status, 200)

  const hash = await hashPassword('carol-password-1')
  gw.write({
    ...before,
    server: { host: '127.0.0.1', port: 1, watchConfig: false },
    backends: [{ name: 'o', type: 'ollama', url: o.url, maxConcurrent: 4 }],
    auth: { jwt: { secret: SECRET }, users: [{ username: 'carol', passwordHash: hash }], modelAccess: { user: ['llama*'] } },
    limits: { requestsPerMinute: { user: 3 } },
    models: { aliases: { fast: 'llama3.2' } },
  })
  const answer = await reload(gw)
  t.equal(answer.status, 200)
  t.same(answer.json.restartRequired, ['server.port'])
  t.same([...answer.json.applied].sort(), ['auth.modelAccess.user', 'auth.users', 'backends', 'limits.requestsPerMinute.user', 'models.aliases.fast'])
  t.equal(new URL(gw.url).port, port, 'the listener stays where it was')
  t.equal(gw.app.gateway.pool.byName('o'), backend, 'a backend with only a new slot count is kept, with its state')
  t.equal(backend.maxConcurrent, 4)

  const bob = { authorization: `Bearer ${hmacJwt({ sub: 'bob', role: 'user', exp: inOneHour() }, SECRET)}` }
  t.equal((await chat(gw, 'fast', bob)).status, 200, 'the new alias routes')
  t.equal((await chat(gw, 'qwen3:8b', bob)).status, 403, 'the new model access rule refuses')
  t.equal((await chat(gw, 'llama3.2', bob)).status, 200)
  const limited = await chat(gw, 'llama3.2', bob)
  t.equal(limited.status, 429, 'the new rate limit (3 per minute) holds')
  t.equal((await post(gw, '/auth/login', {}, { username: 'carol', password: 'carol-password-1' })).status, 200, 'a user added to the file can log in')

  const again = await reload(gw)
  t.same(again.json.applied, [], 'nothing new to apply')
  t.same(again.json.restartRequired, ['server.port'], 'the port still waits for a restart')
})

t.test('a change of the file reloads once, after the debounce; a Kubernetes-style link swap too', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  // The ConfigMap layout: chatgate.yaml -> ..data/chatgate.yaml, ..data -> ..v1 (swapped atomically).
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-configmap-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const version = (name: string, raw: object): void => {
    mkdirSync(join(dir, name))
    writeFileSync(join(dir, name, 'chatgate.yaml'), stringify({ ...raw, store: { dir: join(dir, 'data') } }))
  }
  const watched = (aliases: Record<string, string>): object => base([{ name: 'o', type: 'ollama', url: o.url }], {
    server: { host: '127.0.0.1', port: 0, watchConfig: true, reloadDebounceMs: 100 },
    models: { aliases },
  })
  version('..v1', watched({}))
  symlinkSync('..v1', join(dir, '..data'))
  symlinkSync('..data/chatgate.yaml', join(dir, 'chatgate.yaml'))
  const gw = await fromFile(t, {}, join(dir, 'chatgate.yaml'))
  const reloads = async (n: number): Promise<void> => { while (gw.app.reloads.succeeded < n) await new Promise((resolve) => setTimeout(resolve, 20)) }

  version('..v2', watched({ one: 'llama3.2' }))
  symlinkSync('..v2', join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  await reloads(1)
  t.match(gw.app.reloads.last, { ok: true, trigger: 'file', applied: ['models.aliases.one'] })
  t.equal((await chat(gw, 'one')).status, 200)

  // An editor's save (the link replaced by a file, then written again twice): one reload.
  const file = join(dir, 'chatgate.yaml')
  unlinkSync(file)
  for (const n of [2, 3, 4]) writeFileSync(file, stringify({ ...watched({ [`n${n}`]: 'llama3.2' }), store: { dir: join(dir, 'data') } }))
  await reloads(2)
  t.match(gw.app.reloads.last, { ok: true, trigger: 'file' })
  t.same(Object.keys(gw.app.gateway.config.models.aliases), ['n4'], 'the last write is what runs')
  // A reload on request counts next: no third file reload came in between.
  t.equal((await reload(gw)).status, 200)
  t.equal(gw.app.reloads.succeeded, 3)
  t.equal(gw.app.reloads.last!.trigger, 'api')
})

t.test('SIGHUP reloads the config of `chatgate serve`', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-sighup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'chatgate.yaml')
  const write = (aliases: Record<string, string>): void => writeFileSync(file, stringify({ ...base([{ name: 'o', type: 'ollama', url: o.url }]), log: { level: 'info' }, store: { dir: join(dir, 'data') }, models: { aliases } }))
  write({})
  const child = spawn(process.execPath, [...process.execArgv, 'src/cli.ts', 'serve', '--config', file])
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  const seen = (pattern: RegExp): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const check = (): void => {
      const match = pattern.exec(output)
      if (match !== null) { child.stdout.off('data', check); resolve(match) }
    }
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); check() })
    child.once('close', () => reject(new Error(`serve exited:\n${output}`)))
    check()
  })
  const url = (await seen(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/))[1]!
  const gw = { url, user: { authorization: `Bearer ${hmacJwt({ sub: 'alice', role: 'user', exp: inOneHour() }, SECRET)}` } } as unknown as FileGateway
  t.equal((await chat(gw, 'hup')).status, 404, 'no such model yet')
  write({ hup: 'llama3.2' })
  child.kill('SIGHUP')
  await seen(/"msg":"config reloaded"/)
  t.equal((await chat(gw, 'hup')).status, 200, 'the alias from the reloaded file routes')
  child.kill('SIGTERM')
})
