import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword, verifyPassword } from '../src/auth/passwords.js'
import { startGateway } from './helpers/gateway.js'
import { hmacJwt, inOneHour, rsaJwt, unsignedJwt } from './helpers/jwt.js'

// A backend nobody listens on: auth is decided before any backend is involved.
const deadBackend = [{ name: 'nowhere', type: 'ollama' as const, url: 'http://127.0.0.1:9' }]
const SECRET = 's'.repeat(40)

async function status (url: string, headers: Record<string, string>): Promise<{ status: number, body: any, headers: Headers }> {
  const res = await fetch(url, { headers })
  const text = await res.text()
  return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) : text, headers: res.headers }
}

t.test('every route but /healthz needs a bearer token, refused in the caller\'s protocol', async (t) => {
  const gw = await startGateway(t, deadBackend, { auth: { jwt: { secret: SECRET } } })
  t.equal((await status(`${gw.url}/healthz`, {})).status, 200)
  const openai = await status(`${gw.url}/v1/models`, {})
  t.equal(openai.status, 401)
  t.same(openai.body, { error: { message: 'missing credentials: send Authorization: Bearer <token or API key>, or Basic with the API key as the password', type: 'authentication_error', param: null, code: 'missing_credentials' } })
  const ollama = await status(`${gw.url}/api/tags`, {})
  t.equal(ollama.status, 401)
  t.same(ollama.body, { error: 'missing credentials: send Authorization: Bearer <token or API key>, or Basic with the API key as the password' })
  t.equal((await status(`${gw.url}/`, {})).status, 401, 'even the Ollama probe route')
  t.equal((await status(`${gw.url}/`, gw.auth())).body, 'Ollama is running')
  t.equal((await status(`${gw.url}/no/such/route`, {})).status, 401, 'unknown routes are not revealed to strangers')
  const unknown = await status(`${gw.url}/v1/no-such-route`, gw.auth())
  t.equal(unknown.status, 404)
  t.equal(unknown.body.error.type, 'not_found_error')
})

t.test('bad tokens of every kind get 401', async (t) => {
  const gw = await startGateway(t, deadBackend, { auth: { jwt: { secret: SECRET } } })
  const now = Math.floor(Date.now() / 1000)
  const claims = { sub: 'mallory', role: 'admin', exp: inOneHour() }
  const cases: Array<[string, string]> = [
    ['expired', hmacJwt({ ...claims, exp: now - 10 }, SECRET)],
    ['forged signature', hmacJwt(claims, 'another-secret-another-secret-another')],
    ['alg none', unsignedJwt(claims)],
    ['no exp', hmacJwt({ sub: 'mallory', role: 'admin' }, SECRET)],
    ['no role', hmacJwt({ sub: 'mallory', exp: inOneHour() }, SECRET)],
    ['unknown role', hmacJwt({ sub: 'mallory', role: 'root', exp: inOneHour() }, SECRET)],
    ['no sub', hmacJwt({ role: 'user', exp: inOneHour() }, SECRET)],
    ['garbage', 'not.a.jwt'],
  ]
  for (const [name, token] of cases) {
    const res = await status(`${gw.url}/v1/models`, { authorization: `Bearer ${token}` })
    t.equal(res.status, 401, name)
    t.equal(res.body.error.type, 'authentication_error', name)
  }
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt({ ...claims, exp: now - 10 }, SECRET)}` })).body.error.message, 'token expired')
  for (const header of ['Basic YTpi', 'Bearer', 'Bearer a b', 'token']) {
    t.equal((await status(`${gw.url}/api/tags`, { authorization: header })).status, 401, `Authorization: ${header}`)
  }
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt(claims, SECRET)}` })).status, 200, 'a well-made token passes')
})

t.test('issuer and audience are checked when configured', async (t) => {
  const gw = await startGateway(t, deadBackend, { auth: { jwt: { secret: SECRET, issuer: 'https://chat.example.org', audience: 'chatgate' } } })
  const base = { sub: 'a', role: 'user', exp: inOneHour() }
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt(base, SECRET)}` })).status, 401, 'missing iss/aud')
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt({ ...base, iss: 'https://evil', aud: 'chatgate' }, SECRET)}` })).status, 401, 'wrong iss')
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt({ ...base, iss: 'https://chat.example.org', aud: 'other' }, SECRET)}` })).status, 401, 'wrong aud')
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${hmacJwt({ ...base, iss: 'https://chat.example.org', aud: 'chatgate' }, SECRET)}` })).status, 200)
  t.equal((await status(`${gw.url}/v1/models`, gw.auth())).status, 200, 'issued tokens carry iss and aud')
})

t.test('RS256, ES256 and EdDSA with key files; HS/RS confusion refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-keys-'))
  const kinds: Array<['RS256' | 'ES256' | 'EdDSA', ReturnType<typeof generateKeyPairSync>]> = [
    ['RS256', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ES256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['EdDSA', generateKeyPairSync('ed25519')],
  ]
  for (const [algorithm, pair] of kinds) {
    const publicKeyFile = join(dir, `${algorithm}.pub.pem`)
    const privateKeyFile = join(dir, `${algorithm}.pem`)
    const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }) as string
    writeFileSync(publicKeyFile, publicPem)
    writeFileSync(privateKeyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
    const gw = await startGateway(t, deadBackend, { auth: { jwt: { algorithm, publicKeyFile, privateKeyFile } } })
    t.equal((await status(`${gw.url}/v1/models`, gw.auth())).status, 200, `${algorithm} token issued and verified`)
    const confused = hmacJwt({ sub: 'm', role: 'admin', exp: inOneHour() }, publicPem)
    t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${confused}` })).status, 401, `${algorithm}: HS256 signed with the public key is refused`)
    if (algorithm === 'RS256') {
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
      t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${rsaJwt({ sub: 'm', role: 'user', exp: inOneHour() }, other.privateKey)}` })).status, 401, 'RS256 from another key')
      t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${rsaJwt({ sub: 'm', role: 'user', exp: inOneHour() }, pair.privateKey)}` })).status, 200, 'RS256 from the right key')
    }
  }
  const verifyOnly = await startGateway(t, deadBackend, { auth: { jwt: { algorithm: 'EdDSA', publicKeyFile: join(dir, 'EdDSA.pub.pem') } } })
  t.throws(() => verifyOnly.token(), /privateKeyFile/, 'without a private key tokens cannot be issued')
})

t.test('a generated secret is kept under store.dir with mode 0600 and survives restarts', async (t) => {
  const store = mkdtempSync(join(tmpdir(), 'chatgate-store-'))
  const first = await startGateway(t, deadBackend, { store: { dir: store } })
  const token = first.token()
  t.equal(statSync(join(store, 'jwt-secret')).mode & 0o777, 0o600)
  await first.app.close()
  const second = await startGateway(t, deadBackend, { store: { dir: store } })
  t.equal((await status(`${second.url}/v1/models`, { authorization: `Bearer ${token}` })).status, 200, 'a token from before the restart still works')
})

t.test('login with scrypt-hashed users; per-IP login limit', async (t) => {
  const hash = await hashPassword('correct horse')
  t.ok(await verifyPassword('correct horse', hash))
  t.notOk(await verifyPassword('wrong', hash))
  t.notOk(await verifyPassword('x', 'plain-text'), 'a malformed stored hash never matches')
  const gw = await startGateway(t, deadBackend, { auth: { loginPerMinute: 4, users: [{ username: 'bob', passwordHash: hash, role: 'admin' }] } })
  const login = async (body: unknown): Promise<Response> => fetch(`${gw.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const ok = await login({ username: 'bob', password: 'correct horse' })
  t.equal(ok.status, 200)
  const { token, expires_at: expiresAt } = await ok.json() as { token: string, expires_at: string }
  t.ok(Date.parse(expiresAt) > Date.now() + 3500_000, 'default ttl 1h')
  const me = await status(`${gw.url}/v1/models`, { authorization: `Bearer ${token}` })
  t.equal(me.status, 200)
  t.equal((await login({ username: 'bob', password: 'nope' })).status, 401)
  t.equal((await login({ username: 'nobody', password: 'nope' })).status, 401)
  t.equal((await login({ username: 'bob' })).status, 400, 'a malformed login is a clear 400')
  const limited = await login({ username: 'bob', password: 'correct horse' })
  t.equal((await login({ username: 'bob' })).status, 429, 'still limited, counted before validation')
  t.equal(limited.status, 429, 'the fifth attempt within a minute, the malformed one counted')
  t.ok(Number(limited.headers.get('retry-after')) > 0)
})

t.test('requests per minute per user, per role; 429 + Retry-After in the caller\'s protocol', async (t) => {
  const gw = await startGateway(t, deadBackend, { auth: { jwt: { secret: SECRET } }, limits: { requestsPerMinute: { user: 2, admin: 3 } } })
  const alice = gw.auth('user', 'alice')
  for (let i = 0; i < 2; i++) {
    const res = await status(`${gw.url}/v1/models`, alice)
    t.equal(res.status, 200)
    t.equal(res.headers.get('x-ratelimit-limit'), '2')
    t.equal(res.headers.get('x-ratelimit-remaining'), String(1 - i))
  }
  const openai = await status(`${gw.url}/v1/models`, alice)
  t.equal(openai.status, 429)
  t.ok(Number(openai.headers.get('retry-after')) > 0)
  t.equal(openai.body.error.type, 'rate_limit_error')
  t.match(openai.body.error.message, /2 requests per minute for user 'alice'/)
  const ollama = await status(`${gw.url}/api/tags`, alice)
  t.equal(ollama.status, 429)
  t.match(ollama.body.error, /rate limit exceeded/)
  t.equal((await status(`${gw.url}/v1/models`, gw.auth('user', 'carol'))).status, 200, 'other users have their own budget')
  for (let i = 0; i < 3; i++) t.equal((await status(`${gw.url}/v1/models`, gw.auth('admin'))).status, 200, 'admins have theirs')
  t.equal((await status(`${gw.url}/v1/models`, gw.auth('admin'))).status, 429)
  t.equal((await status(`${gw.url}/healthz`, {})).status, 200, '/healthz is never limited')
})

t.test('a token verified once still stops working at its exp', async (t) => {
  const gw = await startGateway(t, deadBackend, { auth: { jwt: { secret: SECRET } } })
  const exp = Math.floor(Date.now() / 1000) + 2
  const token = hmacJwt({ sub: 'brief', role: 'user', exp }, SECRET)
  t.equal((await status(`${gw.url}/v1/models`, { authorization: `Bearer ${token}` })).status, 200, 'valid before exp')
  // Wait until the token's own expiry has passed: a fixed point in time, not a race.
  await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 100))
  const after = await status(`${gw.url}/v1/models`, { authorization: `Bearer ${token}` })
  t.equal(after.status, 401, 'refused after exp although it was verified before')
  t.equal(after.body.error.message, 'token expired')
})
