import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { verifyPassword } from '../src/auth/passwords.js'
import { cli } from './helpers/cli.js'
import { hmacJwt, inOneHour } from './helpers/jwt.js'


const dir = mkdtempSync(join(tmpdir(), 'chatgate-cli-'))
const SECRET = 'c'.repeat(40)
const goodConfig = join(dir, 'good.yaml')
writeFileSync(goodConfig, `server: { host: 127.0.0.1, port: 0 }\nauth: { jwt: { secret: ${SECRET} } }\nstore: { dir: ${join(dir, 'data')} }\nbackends:\n  - { name: a, type: ollama, url: "http://127.0.0.1:9" }\n`)
const badConfig = join(dir, 'bad.yaml')
writeFileSync(badConfig, 'backends:\n  - { name: a, type: ollama, url: "http://127.0.0.1:9" }\n  - { name: b, type: vllm, url: "nope" }\n')

t.test('--help everywhere', async (t) => {
  const commands = ['serve', 'check-config', 'hash-password', 'token']
  // Each run starts a TypeScript-loading Node: run them side by side.
  const [main, none, unknown, badFlag, ...helps] = await Promise.all([
    cli(['--help']), cli([]), cli(['frobnicate']), cli(['serve', '--colour']), ...commands.map((c) => cli([c, '--help'])),
  ])
  t.equal(main!.code, 0)
  for (const command of commands) t.match(main!.stdout, command)
  commands.forEach((command, i) => {
    t.equal(helps[i]!.code, 0, `${command} --help`)
    t.match(helps[i]!.stdout, `chatgate ${command}`)
  })
  t.equal(none!.code, 1, 'no command: usage and exit 1')
  t.equal(unknown!.code, 1)
  t.match(unknown!.stderr, 'unknown command "frobnicate"')
  t.equal(badFlag!.code, 1)
  t.match(badFlag!.stderr, /Unknown option '--colour'/)
})

t.test('check-config reports every problem by path with a non-zero exit', async (t) => {
  const [ok, bad, fromEnv, shipped] = await Promise.all([
    cli(['check-config', '--config', goodConfig]),
    cli(['check-config', '--config', badConfig]),
    cli(['check-config'], '', { CHATGATE_CONFIG: badConfig }),
    cli(['check-config']),
  ])
  t.equal(ok!.code, 0)
  t.match(ok!.stdout, 'OK (1 backend(s), 0 user(s))')
  t.equal(bad!.code, 2)
  t.match(bad!.stderr, 'backends[1].type: must be one of: ollama, xinference, openai')
  t.match(bad!.stderr, 'backends[1].url: must be an http(s) URL')
  t.equal(fromEnv!.code, 2, 'CHATGATE_CONFIG names the file when --config does not')
  t.equal(shipped!.code, 0, 'the shipped default config is valid')
})

t.test('check-config reads the certificate files of tls.mode manual', async (t) => {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  writeFileSync(certFile, 'garbage')
  writeFileSync(keyFile, 'garbage')
  const manual = join(dir, 'manual.yaml')
  writeFileSync(manual, `tls: { mode: manual, certificates: [{ certFile: ${certFile}, keyFile: ${keyFile} }, { certFile: ${join(dir, 'missing.pem')}, keyFile: ${keyFile} }] }\nbackends:\n  - { name: a, type: ollama, url: "http://127.0.0.1:9" }\n`)
  const run = await cli(['check-config', '--config', manual])
  t.equal(run.code, 2)
  t.match(run.stderr, `tls.certificates[0]: ${certFile}: no PEM certificate found`)
  t.match(run.stderr, /tls\.certificates\[1\]: ENOENT/)
})

t.test('hash-password reads stdin and prints a verifiable scrypt hash', async (t) => {
  const [run, empty] = await Promise.all([cli(['hash-password'], 'correct horse\n'), cli(['hash-password'], '')])
  t.equal(run!.code, 0)
  const hash = run!.stdout.trim()
  t.match(hash, /^scrypt\$16384\$8\$1\$/)
  t.ok(await verifyPassword('correct horse', hash), 'the trailing newline is not part of the password')
  t.equal(empty!.code, 1)
  t.match(empty!.stderr, 'no password on standard input')
})

t.test('token prints a JWT signed with the configured key', async (t) => {
  const run = await cli(['token', '--sub', 'alice', '--role', 'admin', '--ttl', '5m', '--config', goodConfig])
  t.equal(run.code, 0)
  const token = run.stdout.trim()
  const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())
  t.match(payload, { sub: 'alice', role: 'admin' })
  t.ok(Math.abs(payload.exp - (Math.floor(Date.now() / 1000) + 300)) < 30, 'exp is five minutes ahead')
  const resigned = hmacJwt({ sub: 'alice', role: 'admin', iat: payload.iat, exp: payload.exp }, SECRET)
  t.equal(resigned.split('.')[2], token.split('.')[2], 'signed with the configured HS256 secret')
  const cases: Array<[string[], string]> = [
    [['--role', 'user'], '--sub NAME is required'],
    [['--sub', 'a', '--role', 'root'], '--role must be user or admin'],
    [['--sub', 'a', '--role', 'user', '--ttl', 'forever'], '--ttl "forever" is not a duration'],
  ]
  const [invalidConfig, ...runs] = await Promise.all([
    cli(['token', '--sub', 'a', '--role', 'user', '--config', badConfig]),
    ...cases.map(([args]) => cli(['token', ...args, '--config', goodConfig])),
  ])
  cases.forEach(([, message], i) => {
    t.equal(runs[i]!.code, 1, message)
    t.match(runs[i]!.stderr, message)
  })
  t.equal(invalidConfig!.code, 2, 'an invalid config is reported')
})

t.test('serve starts, answers, and exits 0 on SIGTERM', async (t) => {
  const child = spawn(process.execPath, [...process.execArgv, 'src/cli.ts', 'serve', '--config', goodConfig])
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  t.teardown(() => { child.kill('SIGKILL') }) // never leave a server behind when an assertion fails
  const lines = createInterface({ input: child.stdout })
  let url = ''
  for await (const line of lines) {
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
    if (match !== null) {
      url = match[1]!
      break
    }
  }
  const health = await fetch(`${url}/healthz`)
  t.equal(health.status, 200)
  const token = hmacJwt({ sub: 'x', role: 'user', exp: inOneHour() }, SECRET)
  t.equal((await fetch(`${url}/api/version`, { headers: { authorization: `Bearer ${token}` } })).status, 200)
  child.kill('SIGTERM')
  t.equal(await exited, 0)
})
