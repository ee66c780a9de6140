// The CLI's store commands (keys, users) against a running gateway's store, from source in child
// processes (split from cli.test.ts: each invocation loads the TypeScript sources anew).
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword } from '../src/auth/passwords.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { cli, type Run } from './helpers/cli.js'
import { startGateway } from './helpers/gateway.js'

const dir = mkdtempSync(join(tmpdir(), 'chatgate-cli-store-'))
const SECRET = 'c'.repeat(40)

t.test('keys create, list and revoke work on the store a running gateway reads', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const store = join(dir, 'keys-store')
  const config = join(dir, 'keys.yaml')
  writeFileSync(config, `auth: { jwt: { secret: ${SECRET} } }\nstore: { dir: ${store} }\nbackends:\n  - { name: o, type: ollama, url: "${o.url}" }\n`)
  // A key's owner must be a known user.
  t.equal((await cli(['users', 'add', 'erin', '--config', config], 'erin-password\n')).code, 0)
  const created = await cli(['keys', 'create', '--owner', 'erin', '--models', 'llama*', '--ttl', '7d', '--json', '--config', config])
  t.equal(created.code, 0, created.stderr)
  const made = JSON.parse(created.stdout) as { key: string, id: string, owner: string, models: string[], expiresAt: string }
  t.match(made, { key: /^cg_/, owner: 'erin', models: ['llama*'], expiresAt: String })
  const plain = await cli(['keys', 'create', '--owner', 'erin', '--config', config])
  t.match(plain.stdout, /^cg_\S+\n\(id [0-9a-f-]+; shown once/)

  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { store: { dir: store } })
  const ask = (): Promise<number> => fetch(`${gw.url}/api/tags`, { headers: { authorization: `Bearer ${made.key}` } }).then((r) => r.status)
  t.equal(await ask(), 200)
  const list = await cli(['keys', 'list', '--owner', 'erin', '--config', config])
  t.match(list.stdout, new RegExp(`${made.id}\\t${made.key.slice(0, 10)}…\\terin\\tuser\\tactive`))
  t.equal(JSON.parse((await cli(['keys', 'list', '--json', '--config', config])).stdout).length, 2)
  const revoked = await cli(['keys', 'revoke', made.id, '--config', config])
  t.match(revoked, { code: 0, stdout: `revoked ${made.id}` })
  t.equal(await ask(), 401, 'the running gateway refuses it at the next request')

  t.match(await cli(['keys', 'revoke', made.id, '--config', config]), { code: 1, stderr: /already revoked/ })
  t.match(await cli(['keys', 'revoke', 'nope', '--config', config]), { code: 1, stderr: /no API key nope/ })
  t.match(await cli(['keys', 'create', '--config', config]), { code: 1, stderr: /--owner NAME is required/ })
  t.match(await cli(['keys', 'create', '--owner', 'x', '--role', 'root', '--config', config]), { code: 1, stderr: /--role must be user or admin/ })
  t.match(await cli(['keys', 'create', '--owner', 'x', '--ttl', 'soon', '--config', config]), { code: 1, stderr: /is not a duration/ })
  t.match(await cli(['keys', '--config', config]), { code: 1, stderr: /keys needs create, list or revoke/ })
})

t.test('users add, list, disable, enable, reset-password and set-role work on the store a running gateway reads', async (t) => {
  const store = join(dir, 'users-store')
  const config = join(dir, 'users.yaml')
  const rootHash = await hashPassword('root-password')
  writeFileSync(config, `auth: { jwt: { secret: ${SECRET} }, users: [{ username: root, passwordHash: "${rootHash}", role: admin }] }\nstore: { dir: ${store} }\nbackends:\n  - { name: a, type: ollama, url: "http://127.0.0.1:9" }\n`)
  const users = (args: string[], input = ''): Promise<Run> => cli(['users', ...args, '--config', config], input)

  const added = await users(['add', 'frank', '--role', 'admin', '--email', 'frank@example.org', '--json'], 'frank-password\n')
  t.equal(added.code, 0, added.stderr)
  t.match(JSON.parse(added.stdout), { name: 'frank', role: 'admin', email: 'frank@example.org', enabled: true, source: 'store', createdAt: String })
  t.notOk(added.stdout.includes('scrypt'), 'never the hash')
  t.match(await users(['add', 'gina'], 'gina-password'), { code: 0, stdout: 'added user gina\n' })
  const [again, configured, empty, short, badRole, badName, noName] = await Promise.all([
    users(['add', 'frank'], 'frank-password'),
    users(['add', 'root'], 'root-password'),
    users(['add', 'hal'], ''),
    users(['add', 'hal'], 'short\n'),
    users(['add', 'hal', '--role', 'root'], 'hal-password'),
    users(['add', 'hal smith'], 'hal-password'),
    users(['disable']),
  ])
  t.match(again, { code: 1, stderr: /user 'frank' already exists/ })
  t.match(configured, { code: 1, stderr: /user 'root' is managed in the config file \(auth\.users\)/ })
  t.match(empty, { code: 1, stderr: /no password on standard input/ })
  t.match(short, { code: 1, stderr: /password must have at least 8 characters/ })
  t.match(badRole, { code: 1, stderr: /--role must be user or admin/ })
  t.match(badName, { code: 1, stderr: /user name 'hal smith' may only have letters, digits/ })
  t.match(noName, { code: 1, stderr: /users disable needs the user's name/ })

  const [listed, text] = await Promise.all([users(['list', '--json']), users(['list'])])
  t.same(JSON.parse(listed.stdout).map((u: { name: string, source: string, role: string }) => [u.name, u.source, u.role]),
    [['root', 'config', 'admin'], ['frank', 'store', 'admin'], ['gina', 'store', 'user']])
  t.match(text.stdout, /^name\trole\tstate\tsource\temail\tcreated\n/)
  t.match(text.stdout, /\nfrank\tadmin\tenabled\tstore\tfrank@example\.org\t\d{4}-/)
  t.match(text.stdout, /\nroot\tadmin\tenabled\tconfig\t-\t-\n/)

  const gw = await startGateway(t, [{ name: 'a', type: 'ollama', url: 'http://127.0.0.1:9' }], { auth: { jwt: { secret: SECRET } }, store: { dir: store } })
  const login = (username: string, password: string): Promise<Response> =>
    fetch(`${gw.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) })
  const session = await (await login('frank', 'frank-password')).json() as { token: string }
  const ask = (): Promise<number> => fetch(`${gw.url}/api/version`, { headers: { authorization: `Bearer ${session.token}` } }).then((r) => r.status)
  t.equal(await ask(), 200)

  const disabled = await users(['disable', 'frank', '--json'])
  t.equal(disabled.code, 0, disabled.stderr)
  t.match(JSON.parse(disabled.stdout), { name: 'frank', enabled: false })
  t.equal(await ask(), 401, 'the running gateway refuses frank at the next request')
  t.equal((await login('frank', 'frank-password')).status, 401)
  t.match(await users(['enable', 'frank']), { code: 0, stdout: 'enabled frank\n' })
  t.equal((await login('frank', 'frank-password')).status, 200, 'enabled again')

  const reset = await users(['reset-password', 'frank', '--json'], 'frank-new-password\n')
  t.equal(reset.code, 0, reset.stderr)
  t.match(JSON.parse(reset.stdout), { name: 'frank', enabled: true })
  t.equal((await login('frank', 'frank-password')).status, 401, 'the old password fails')
  t.equal((await login('frank', 'frank-new-password')).status, 200, 'the new one works')
  t.match(await users(['set-role', 'frank', '--role', 'user', '--json']), { code: 0, stdout: /"role":"user"/ })

  const [unknownDisable, unknownReset, configDisable, noAction] = await Promise.all([
    users(['disable', 'ghost']),
    users(['reset-password', 'ghost'], 'ghost-password'),
    users(['disable', 'root']),
    users([]),
  ])
  t.match(unknownDisable, { code: 1, stderr: /unknown user 'ghost'/ })
  t.match(unknownReset, { code: 1, stderr: /unknown user 'ghost'/ })
  t.match(configDisable, { code: 1, stderr: /managed in the config file/ })
  t.match(noAction, { code: 1, stderr: /users needs add, list, disable, enable, reset-password or set-role/ })
})

t.test('keys create names a known owner, takes the owner\'s role and limits of its own, and refuses a duplicate name', async (t) => {
  const store = join(dir, 'owners-store')
  const config = join(dir, 'owners.yaml')
  writeFileSync(config, `auth: { jwt: { secret: ${SECRET} }, users: [{ username: root, passwordHash: "scrypt$x", role: admin }] }\nstore: { dir: ${store} }\nbackends:\n  - { name: a, type: ollama, url: "http://127.0.0.1:9" }\n`)
  const keys = (args: string[]): Promise<Run> => cli(['keys', ...args, '--config', config])
  const made = await keys(['create', '--owner', 'root', '--name', 'laptop', '--rpm', '5', '--tokens-per-day', '1000', '--tokens-per-month', '0', '--json'])
  t.equal(made.code, 0, made.stderr)
  t.match(JSON.parse(made.stdout), { owner: 'root', role: 'admin', name: 'laptop', limits: { requestsPerMinute: 5, tokensPerDay: 1000, tokensPerMonth: 0 } })
  const [duplicate, unknown, badCount, narrowed, help] = await Promise.all([
    keys(['create', '--owner', 'root', '--name', 'laptop']),
    keys(['create', '--owner', 'ghost']),
    keys(['create', '--owner', 'root', '--rpm', 'many']),
    keys(['create', '--owner', 'root', '--role', 'user', '--json']),
    cli(['users', '--help']),
  ])
  t.match(duplicate, { code: 1, stderr: /an active API key named 'laptop' already exists for root/ })
  t.match(unknown, { code: 1, stderr: /unknown user 'ghost'/ })
  t.match(badCount, { code: 1, stderr: /--rpm "many" is not a whole number/ })
  t.equal(JSON.parse(narrowed.stdout).role, 'user', '--role may narrow the owner\'s role')
  t.match(help, { code: 0, stdout: /chatgate users add NAME/ })
  const list = await keys(['list'])
  t.match(list.stdout, /\tmodels\tlimits\tname\n/)
  t.match(list.stdout, /\troot\tadmin\tactive\t-\t\*\trpm=5,day=1000,month=0\tlaptop/)
})
