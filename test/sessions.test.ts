// Login sessions: an access JWT naming its session and a single-use refresh token; refresh rotates,
// a reused refresh token ends the session, logout ends it, expired and unknown refresh tokens are
// refused; refresh tokens are stored only hashed; no password or token is ever logged.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword } from '../src/auth/passwords.js'
import { ConfigError, validateConfig } from '../src/config/load.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { bearer, call, captureLog, claims, login, models, refresh } from './helpers/accounts.js'

const deadBackend = [{ name: 'nowhere', type: 'ollama' as const, url: 'http://127.0.0.1:9' }]
const PASSWORD = 'correct horse battery'
const hash = hashPassword(PASSWORD)
const REFRESH_TOKEN = /^cgr_[A-Za-z0-9_-]{43}$/

/** A gateway with one config-file user, amy. */
async function setup (t: Test, auth: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Gateway> {
  return startGateway(t, deadBackend, { auth: { users: [{ username: 'amy', passwordHash: await hash }], ...auth }, ...extra })
}

t.test('login answers an access token naming its session and a refresh token; refresh rotates; a reused refresh token ends the session', async (t) => {
  const gw = await setup(t)
  const first = await login(gw, 'amy', PASSWORD)
  t.equal(first.status, 200)
  t.same(Object.keys(first.json).sort(), ['expires_at', 'refresh_expires_at', 'refresh_token', 'token', 'token_type'])
  t.match(first.json, { token_type: 'Bearer', refresh_token: REFRESH_TOKEN })
  t.ok(Math.abs(Date.parse(first.json.expires_at) - (Date.now() + 3600_000)) < 60_000, 'access: tokenTtl, 1h')
  t.ok(Math.abs(Date.parse(first.json.refresh_expires_at) - (Date.now() + 30 * 86400_000)) < 60_000, 'refresh: refreshTokenTtl, 30d by default')
  const sid = claims(first.json.token).sid
  t.match(claims(first.json.token), { sub: 'amy', role: 'user', sid: /^[0-9a-f-]{36}$/ })
  t.equal((await models(gw, bearer(first.json.token))).status, 200)

  const second = await refresh(gw, first.json.refresh_token)
  t.equal(second.status, 200)
  t.match(second.json, { token_type: 'Bearer', refresh_token: REFRESH_TOKEN, expires_at: String, refresh_expires_at: String })
  t.not(second.json.refresh_token, first.json.refresh_token, 'a new refresh token')
  t.match(claims(second.json.token), { sub: 'amy', role: 'user', sid }, 'of the same session')
  t.equal((await models(gw, bearer(second.json.token))).status, 200)
  t.equal((await models(gw, bearer(first.json.token))).status, 200, 'the earlier access token lives on until its exp')
  const third = await refresh(gw, second.json.refresh_token)
  t.equal(third.status, 200, 'and again')

  // The first refresh token again: someone else has a copy. The whole session ends.
  const reused = await refresh(gw, first.json.refresh_token)
  t.same(reused, { status: 401, json: { error: { message: 'refresh token already used; the session is ended, log in again', type: 'authentication_error', param: null, code: 'refresh_token_reused' } } })
  for (const token of [first.json.token, second.json.token, third.json.token]) {
    t.match(await models(gw, bearer(token)), { status: 401, json: { error: { message: 'session ended', code: 'session_ended' } } })
  }
  t.match(await call(gw, 'GET', '/api/tags', bearer(third.json.token)), { status: 401, json: { error: 'session ended' } }, 'in the Ollama protocol too')
  t.match(await refresh(gw, third.json.refresh_token), { status: 401, json: { error: { message: 'session ended' } } }, 'the newest refresh token too')
  const other = await login(gw, 'amy', PASSWORD)
  t.not(claims(other.json.token).sid, sid, 'a new login is a new session')
  t.equal((await models(gw, bearer(other.json.token))).status, 200, 'other sessions are untouched')
})

t.test('logout ends the session of the access token, and of a refresh token in the body; tokens without a session are unaffected', async (t) => {
  const gw = await setup(t)
  const one = (await login(gw, 'amy', PASSWORD)).json
  const two = (await login(gw, 'amy', PASSWORD)).json
  const three = (await login(gw, 'amy', PASSWORD)).json
  const plain = gw.auth('user', 'amy') // from `chatgate token`: no session

  t.same(await call(gw, 'POST', '/auth/logout', bearer(one.token)), { status: 200, json: { sessions_ended: 1 } })
  t.match(await models(gw, bearer(one.token)), { status: 401, json: { error: { message: 'session ended' } } }, 'refused from the next request on')
  t.match(await refresh(gw, one.refresh_token), { status: 401, json: { error: { message: 'session ended', code: 'session_ended' } } })
  t.equal((await models(gw, bearer(two.token))).status, 200, 'another session of the same user lives on')
  t.equal((await models(gw, plain)).status, 200)

  t.same(await call(gw, 'POST', '/auth/logout', bearer(two.token), { refresh_token: three.refresh_token }), { status: 200, json: { sessions_ended: 2 } })
  t.match(await models(gw, bearer(three.token)), { status: 401, json: { error: { message: 'session ended' } } })
  t.same(await call(gw, 'POST', '/auth/logout', plain, {}), { status: 200, json: { sessions_ended: 0 } }, 'nothing to end')
  t.same(await call(gw, 'POST', '/auth/logout', plain, { refresh_token: two.refresh_token }), { status: 200, json: { sessions_ended: 0 } }, 'already ended')
  t.equal((await models(gw, plain)).status, 200, 'a token without sid is unaffected by logouts')
  t.match(await call(gw, 'POST', '/auth/logout', plain, { refresh_token: 42 }), { status: 400, json: { error: { message: 'invalid request: body.refresh_token must be string' } } })
  t.match(await call(gw, 'POST', '/auth/logout', {}), { status: 401, json: { error: { code: 'missing_credentials' } } }, 'logout needs the access token')
})

t.test('expired, unknown and misused refresh tokens are refused in the OpenAI error shape', async (t) => {
  const gw = await setup(t, { refreshTokenTtl: '2h' })
  // Sessions that expired longer ago than an access token lives go at a login; younger ones stay.
  const db = gw.app.gateway.db
  db.prepare("INSERT INTO sessions (id, user, created_at, expires_at) VALUES ('old', 'amy', 0, ?), ('recent', 'amy', 0, ?)").run(Date.now() - 2 * 3600_000, Date.now() - 60_000)
  db.prepare("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ('h-old', 'old', 0, 0), ('h-recent', 'recent', 0, 0)").run()
  const session = (await login(gw, 'amy', PASSWORD)).json
  t.same(db.prepare("SELECT id FROM sessions WHERE id IN ('old', 'recent')").pluck().all(), ['recent'])
  t.same(db.prepare("SELECT session_id FROM refresh_tokens WHERE hash IN ('h-old', 'h-recent')").pluck().all(), ['recent'])
  t.ok(Math.abs(Date.parse(session.refresh_expires_at) - (Date.now() + 7200_000)) < 60_000, 'auth.refreshTokenTtl sets the lifetime')
  t.same(await refresh(gw, 'cgr_' + 'A'.repeat(43)), { status: 401, json: { error: { message: 'invalid refresh token', type: 'authentication_error', param: null, code: 'invalid_refresh_token' } } })
  t.match(await refresh(gw, 'anything'), { status: 401, json: { error: { message: 'invalid refresh token' } } })
  t.match(await call(gw, 'POST', '/auth/refresh', {}, {}), { status: 400, json: { error: { message: 'invalid request: body.refresh_token is required' } } })
  t.match(await models(gw, bearer(session.refresh_token)), { status: 401, json: { error: { message: 'a refresh token is not an access token: POST it to /auth/refresh' } } })

  // Its expiry, set in the past in the store: no waiting, no timing luck.
  const tokenHash = createHash('sha256').update(session.refresh_token).digest('hex')
  t.equal(gw.app.gateway.db.prepare('UPDATE refresh_tokens SET expires_at = ? WHERE hash = ?').run(Date.now() - 1000, tokenHash).changes, 1)
  t.same(await refresh(gw, session.refresh_token), { status: 401, json: { error: { message: 'refresh token expired', type: 'authentication_error', param: null, code: 'refresh_token_expired' } } })
  t.equal((await models(gw, bearer(session.token))).status, 200, 'the access token keeps its own exp')

  t.same(problemsOf({ auth: { refreshTokenTtl: 'forever' } }), ['auth.refreshTokenTtl: must be a duration like 30d (s, m, h, d): the lifetime of refresh tokens from /auth/login, started again by each /auth/refresh'])
})

function problemsOf (raw: Record<string, unknown>): string[] {
  try {
    validateConfig({ backends: deadBackend, ...raw })
    return []
  } catch (err) {
    return (err as ConfigError).problems
  }
}

t.test('refresh tokens are stored only as hashes, and survive a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-sessions-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const gw = await setup(t, {}, { store: { dir } })
  const session = (await login(gw, 'amy', PASSWORD)).json
  const rotated = (await refresh(gw, session.refresh_token)).json
  const rows = gw.app.gateway.db.prepare('SELECT hash FROM refresh_tokens ORDER BY created_at').all() as Array<{ hash: string }>
  t.same(rows.map((r) => r.hash).sort(), [session.refresh_token, rotated.refresh_token].map((r: string) => createHash('sha256').update(r).digest('hex')).sort())
  for (const file of ['chatgate.db', 'chatgate.db-wal']) {
    if (!existsSync(join(dir, file))) continue
    const bytes = readFileSync(join(dir, file))
    for (const token of [session.refresh_token, rotated.refresh_token]) t.notOk(bytes.includes(token.slice(4)), `${file} holds no refresh token`)
  }
  await gw.app.close()
  const again = await setup(t, {}, { store: { dir } })
  t.equal((await models(again, bearer(rotated.token))).status, 200, 'the session is still live after a restart')
  t.equal((await refresh(again, rotated.refresh_token)).status, 200)
})

t.test('refresh is rate-limited per client IP, apart from login', async (t) => {
  const gw = await setup(t, { loginPerMinute: 3 })
  const session = (await login(gw, 'amy', PASSWORD)).json
  for (let i = 0; i < 3; i++) t.equal((await refresh(gw, 'cgr_nope')).status, 401)
  const limited = await refresh(gw, session.refresh_token)
  t.match(limited, { status: 429, json: { error: { type: 'rate_limit_error' } } })
  t.equal((await login(gw, 'amy', PASSWORD)).status, 200, 'logins have their own budget')
})

t.test('passwords, access tokens and refresh tokens never reach the log', async (t) => {
  // Everything the gateway writes, at the most talkative level, is searched for secrets.
  const log = captureLog()
  const logged = await startGateway(t, deadBackend, { auth: { users: [{ username: 'amy', passwordHash: await hash }] }, log: { level: 'trace' } }, { logStream: log.stream })
  const secrets: string[] = [PASSWORD, 'store-user-password', 'store-user-new-password']
  t.equal((await call(logged, 'POST', '/admin/users', logged.auth('admin'), { name: 'ben', password: 'store-user-password' })).status, 201)
  t.equal((await call(logged, 'PUT', '/admin/users/ben/password', logged.auth('admin'), { password: 'store-user-new-password' })).status, 200)
  t.equal((await login(logged, 'ben', 'store-user-password')).status, 401, 'a failed login')
  for (const [user, password] of [['amy', PASSWORD], ['ben', 'store-user-new-password']]) {
    const session = (await login(logged, user!, password!)).json
    const next = (await refresh(logged, session.refresh_token)).json
    await refresh(logged, session.refresh_token) // reuse
    secrets.push(session.token, session.refresh_token, next.token, next.refresh_token)
    await models(logged, bearer(next.token))
    await call(logged, 'POST', '/auth/logout', bearer(next.token), { refresh_token: next.refresh_token })
  }
  const { json: key } = await call(logged, 'POST', '/admin/keys', logged.auth('admin'), { owner: 'ben', name: 'k' })
  secrets.push(key.key)
  await call(logged, 'POST', '/admin/keys', logged.auth('admin'), { owner: 'ben', name: 'k' }) // 409
  await models(logged, bearer(key.key))
  await logged.app.close() // request lines are written when the connection is done
  const text = log.text()
  t.match(text, /"url":"\/auth\/refresh"/, 'the log has the requests')
  for (const secret of secrets) t.notOk(text.includes(secret), `never logged: ${secret.slice(0, 8)}…`)
})
