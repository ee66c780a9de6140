// Users in the store next to the config file's: added, listed, disabled (refused from the next
// request, with a JWT and with an API key), enabled, given a new password, demoted; managed only by
// admins with a login token; and API keys that must name a known owner, with distinct names and
// limits of their own.
import t, { type Test } from 'tap'
import { hashPassword } from '../src/auth/passwords.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { bearer, call, claims, login, models, refresh } from './helpers/accounts.js'

// A backend nobody listens on: everything here is decided before a backend is involved.
const deadBackend = [{ name: 'nowhere', type: 'ollama' as const, url: 'http://127.0.0.1:9' }]
const CAROL_PASSWORD = 'carol-password'
const carolHash = hashPassword(CAROL_PASSWORD)

/** A gateway with one config-file admin, carol. */
async function setup (t: Test): Promise<Gateway> {
  return startGateway(t, deadBackend, { auth: { users: [{ username: 'carol', passwordHash: await carolHash, role: 'admin' }] } })
}

const addUser = (gw: Gateway, body: Record<string, unknown>): Promise<{ status: number, json: any }> => call(gw, 'POST', '/admin/users', gw.auth('admin'), body)

t.test('an admin adds store users; config-file users are listed and keep their names', async (t) => {
  const gw = await setup(t)
  const added = await addUser(gw, { name: 'alice', password: 'alice-password', email: 'alice@example.org' })
  t.equal(added.status, 201)
  t.match(added.json, { name: 'alice', email: 'alice@example.org', role: 'user', enabled: true, source: 'store', createdAt: String, updatedAt: String })
  t.same(Object.keys(added.json).sort(), ['createdAt', 'email', 'enabled', 'name', 'role', 'source', 'updatedAt'], 'never a hash')
  t.match(await addUser(gw, { name: 'alice', password: 'other-password' }), { status: 409, json: { error: { message: "user 'alice' already exists", code: 'user_exists' } } })
  t.match(await addUser(gw, { name: 'carol', password: 'other-password' }), {
    status: 409, json: { error: { message: "user 'carol' is managed in the config file (auth.users); change it there", code: 'config_user' } },
  })
  t.equal((await addUser(gw, { name: 'root', password: 'root-password', role: 'admin' })).json.role, 'admin')

  const list = await call(gw, 'GET', '/admin/users', gw.auth('admin'))
  t.equal(list.status, 200)
  t.same(list.json.users.map((u: { name: string, source: string, role: string }) => [u.name, u.source, u.role]),
    [['carol', 'config', 'admin'], ['alice', 'store', 'user'], ['root', 'store', 'admin']])
  t.notOk(JSON.stringify(list.json).includes('scrypt'), 'no hashes in the list')
  t.match(await call(gw, 'GET', '/admin/users/alice', gw.auth('admin')), { status: 200, json: { name: 'alice', source: 'store' } })
  t.same((await call(gw, 'GET', '/admin/users/carol', gw.auth('admin'))).json, { name: 'carol', role: 'admin', enabled: true, source: 'config' })

  // Both kinds log in.
  const alice = await login(gw, 'alice', 'alice-password')
  t.equal(alice.status, 200)
  t.match(claims(alice.json.token), { sub: 'alice', role: 'user', sid: String })
  t.match(claims((await login(gw, 'carol', CAROL_PASSWORD)).json.token), { sub: 'carol', role: 'admin' })
  t.match(await login(gw, 'alice', 'wrong-password'), { status: 401, json: { error: { message: 'wrong username or password' } } })
})

t.test('bad input: unknown users are 404 naming them, config users 409, malformed bodies 400', async (t) => {
  const gw = await setup(t)
  const admin = gw.auth('admin')
  await addUser(gw, { name: 'alice', password: 'alice-password' })
  t.match(await call(gw, 'GET', '/admin/users/nobody', admin), { status: 404, json: { error: { message: "unknown user 'nobody'", type: 'not_found_error', code: 'user_not_found' } } })
  t.match(await call(gw, 'PATCH', '/admin/users/nobody', admin, { enabled: false }), { status: 404, json: { error: { message: "unknown user 'nobody'" } } })
  t.match(await call(gw, 'PUT', '/admin/users/nobody/password', admin, { password: 'new-password' }), { status: 404, json: { error: { message: "unknown user 'nobody'" } } })
  t.match(await call(gw, 'PATCH', '/admin/users/carol', admin, { enabled: false }), { status: 409, json: { error: { code: 'config_user' } } })
  t.match(await call(gw, 'PUT', '/admin/users/carol/password', admin, { password: 'new-password' }), { status: 409, json: { error: { code: 'config_user' } } })
  const bad: Array<[string, string, unknown, string]> = [
    ['POST', '/admin/users', { name: 'bob', password: 'short' }, 'password must have at least 8 characters'],
    ['POST', '/admin/users', { name: 'bob smith', password: 'bob-password' }, 'invalid request: body.name must match pattern "^[A-Za-z0-9._@-]+$"'],
    ['POST', '/admin/users', { password: 'bob-password' }, 'invalid request: body.name is required'],
    ['POST', '/admin/users', { name: 'bob', password: 'bob-password', role: 'root' }, 'invalid request: body.role must be equal to constant'],
    ['POST', '/admin/users', { name: 'bob', password: 'bob-password', email: 'not-an-address' }, 'invalid request: body.email must match pattern "^[^@\\s]+@[^@\\s]+$"'],
    ['POST', '/admin/users', { name: 'bob', password: 'bob-password', passwordHash: 'scrypt$x' }, 'invalid request: body must NOT have additional properties'],
    ['PATCH', '/admin/users/alice', {}, 'invalid request: body must NOT have fewer than 1 properties'],
    ['PATCH', '/admin/users/alice', { enabled: 'no' }, 'invalid request: body.enabled must be boolean'],
    ['PUT', '/admin/users/alice/password', { password: 'short' }, 'password must have at least 8 characters'],
  ]
  for (const [method, path, body, message] of bad) {
    t.match(await call(gw, method, path, admin, body), { status: 400, json: { error: { message, type: 'invalid_request_error' } } }, `${method} ${path} ${JSON.stringify(body)}`)
  }
  t.equal((await call(gw, 'GET', '/admin/users', admin)).json.users.length, 2, 'nothing was added')
  t.match(await call(gw, 'PATCH', '/admin/users/alice', admin, { email: 'alice@example.org' }), { status: 200, json: { email: 'alice@example.org' } })
  t.notOk('email' in (await call(gw, 'PATCH', '/admin/users/alice', admin, { email: null })).json, 'email: null removes it')
})

t.test('a disabled user is refused from the next request on, with a JWT and with an API key; enabled again, they are back', async (t) => {
  const gw = await setup(t)
  const admin = gw.auth('admin')
  await addUser(gw, { name: 'bob', password: 'bob-password' })
  const session = (await login(gw, 'bob', 'bob-password')).json
  const { json: key } = await call(gw, 'POST', '/admin/keys', admin, { owner: 'bob', name: 'laptop' })
  const credentials = { 'login token': bearer(session.token), 'API key': bearer(key.key), 'chatgate token': gw.auth('user', 'bob'), 'x-api-key': { 'x-api-key': key.key } }
  for (const [what, headers] of Object.entries(credentials)) t.equal((await models(gw, headers)).status, 200, `${what} before`)

  t.match(await call(gw, 'PATCH', '/admin/users/bob', admin, { enabled: false }), { status: 200, json: { name: 'bob', enabled: false } })
  for (const [what, headers] of Object.entries(credentials)) {
    t.same((await models(gw, headers)).json, { error: { message: 'account disabled', type: 'authentication_error', param: null, code: 'account_disabled' } }, `${what} refused`)
  }
  t.match(await call(gw, 'GET', '/api/tags', bearer(key.key)), { status: 401, json: { error: 'account disabled' } }, 'in the Ollama protocol too')
  t.match(await login(gw, 'bob', 'bob-password'), { status: 401, json: { error: { message: 'account disabled', code: 'account_disabled' } } })
  t.match(await login(gw, 'bob', 'wrong-password'), { status: 401, json: { error: { message: 'wrong username or password' } } }, 'a guesser learns nothing')
  t.match(await refresh(gw, session.refresh_token), { status: 401, json: { error: { message: 'session ended' } } }, 'disabling ends the sessions')

  t.match(await call(gw, 'PATCH', '/admin/users/bob', admin, { enabled: true }), { status: 200, json: { enabled: true } })
  t.equal((await models(gw, bearer(key.key))).status, 200, 'the key works again')
  t.equal((await models(gw, gw.auth('user', 'bob'))).status, 200)
  t.match(await models(gw, bearer(session.token)), { status: 401, json: { error: { message: 'session ended' } } }, 'the ended session stays ended')
  t.equal((await login(gw, 'bob', 'bob-password')).status, 200, 'bob logs in again')
})

t.test('a new password: the old one fails, the new one works, the sessions of the old one end', async (t) => {
  const gw = await setup(t)
  await addUser(gw, { name: 'dave', password: 'old-password' })
  const before = (await login(gw, 'dave', 'old-password')).json
  const updated = await call(gw, 'PUT', '/admin/users/dave/password', gw.auth('admin'), { password: 'new-password' })
  t.match(updated, { status: 200, json: { name: 'dave', enabled: true } })
  t.notOk(JSON.stringify(updated.json).includes('scrypt'))
  t.equal((await login(gw, 'dave', 'old-password')).status, 401)
  t.equal((await login(gw, 'dave', 'new-password')).status, 200)
  t.match(await refresh(gw, before.refresh_token), { status: 401, json: { error: { message: 'session ended', code: 'session_ended' } } })
  t.match(await models(gw, bearer(before.token)), { status: 401, json: { error: { message: 'session ended' } } })
})

t.test('managing users is for admins with a login token: 403 for a user token and for an API key', async (t) => {
  const gw = await setup(t)
  await addUser(gw, { name: 'alice', password: 'alice-password' })
  const routes: Array<[string, string, unknown?]> = [
    ['POST', '/admin/users', { name: 'eve', password: 'eve-password' }],
    ['GET', '/admin/users'],
    ['GET', '/admin/users/alice'],
    ['PATCH', '/admin/users/alice', { enabled: false }],
    ['PUT', '/admin/users/alice/password', { password: 'eve-password' }],
  ]
  const { json: adminKey } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'carol' })
  t.equal(adminKey.role, 'admin', "a key's role is its owner's by default")
  for (const [method, path, body] of routes) {
    t.match(await call(gw, method, path, gw.auth('user', 'alice'), body), { status: 403, json: { error: { message: 'managing users is for admins only', type: 'permission_error' } } }, `${method} ${path}: user token`)
    t.match(await call(gw, method, path, bearer(adminKey.key), body), { status: 403, json: { error: { message: 'users are managed with a login token, not with an API key' } } }, `${method} ${path}: admin API key`)
  }
  t.equal((await call(gw, 'GET', '/admin/users/alice', gw.auth('admin'))).json.enabled, true, 'nothing changed')
  t.equal((await login(gw, 'alice', 'eve-password')).status, 401)
})

t.test('a demoted admin acts as a user from the next request on, with old tokens and keys too', async (t) => {
  const gw = await setup(t)
  await addUser(gw, { name: 'erin', password: 'erin-password', role: 'admin' })
  const session = (await login(gw, 'erin', 'erin-password')).json
  const { json: key } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'erin' })
  t.equal(key.role, 'admin')
  t.equal((await call(gw, 'GET', '/admin/users', bearer(session.token))).status, 200)
  t.equal((await call(gw, 'GET', '/admin/keys', bearer(key.key))).status, 200)
  t.match(await call(gw, 'PATCH', '/admin/users/erin', gw.auth('admin'), { role: 'user' }), { status: 200, json: { role: 'user' } })
  t.equal((await call(gw, 'GET', '/admin/users', bearer(session.token))).status, 403, 'the login token from before')
  t.equal((await call(gw, 'GET', '/admin/keys', bearer(key.key))).status, 403, 'the admin key from before')
  t.equal((await models(gw, bearer(key.key))).status, 200, 'still a user')
  const next = await refresh(gw, session.refresh_token)
  t.equal(claims(next.json.token).role, 'user', 'a refresh carries the role of now')
})

t.test('keys and users together: a known owner, distinct names, limits of their own', async (t) => {
  const gw = await setup(t)
  const admin = gw.auth('admin')
  await addUser(gw, { name: 'alice', password: 'alice-password' })
  t.match(await call(gw, 'POST', '/admin/keys', admin, { owner: 'ghost' }), { status: 400, json: { error: { message: "unknown user 'ghost'", type: 'invalid_request_error', code: 'unknown_user' } } })
  t.match(await call(gw, 'POST', '/admin/keys', admin, { owner: 'alice', role: 'admin' }), { status: 400, json: { error: { message: "a key's role cannot exceed its owner's: 'alice' is a user" } } })

  const limits = { requestsPerMinute: 5, tokensPerDay: 1000, tokensPerMonth: 20000 }
  const first = await call(gw, 'POST', '/admin/keys', admin, { owner: 'alice', name: 'notebook', limits })
  t.match(first, { status: 201, json: { owner: 'alice', role: 'user', name: 'notebook', limits } })
  const duplicate = await call(gw, 'POST', '/admin/keys', admin, { owner: 'alice', name: 'notebook' })
  t.same(duplicate, { status: 409, json: { error: { message: "an active API key named 'notebook' already exists for alice", type: 'api_error', param: null, code: 'key_name_taken' } } })
  const alice = gw.auth('user', 'alice')
  t.match(await call(gw, 'POST', '/v1/me/keys', alice, { name: 'notebook' }), { status: 409, json: { error: { message: "an active API key named 'notebook' already exists for alice" } } }, 'for her own keys too')
  t.equal((await call(gw, 'POST', '/admin/keys', admin, { owner: 'carol', name: 'notebook' })).status, 201, 'another owner may use the name')
  t.equal((await call(gw, 'POST', '/v1/me/keys', alice, {})).status, 201, 'unnamed keys are many')
  t.equal((await call(gw, 'POST', '/v1/me/keys', alice, {})).status, 201)
  t.equal((await call(gw, 'DELETE', `/admin/keys/${first.json.id}`, admin)).status, 200)
  const again = await call(gw, 'POST', '/v1/me/keys', alice, { name: 'notebook', limits: { tokensPerDay: 0 } })
  t.match(again, { status: 201, json: { name: 'notebook', limits: { tokensPerDay: 0 } } }, 'a revoked key frees its name')

  const listed = (await call(gw, 'GET', '/admin/keys?owner=alice', admin)).json.keys as Array<{ id: string, limits?: object }>
  t.same(listed.map((k) => k.limits), [limits, undefined, undefined, { tokensPerDay: 0 }], 'limits are listed')
  t.same((await call(gw, 'GET', '/v1/me/keys', alice)).json.keys.find((k: { id: string }) => k.id === again.json.id).limits, { tokensPerDay: 0 })
  t.notOk('limits' in (await call(gw, 'POST', '/v1/me/keys', alice, { limits: {} })).json, 'empty limits are none')
  for (const bad of [{ requestsPerMinute: -1 }, { tokensPerDay: 1.5 }, { tokensPerMonth: '10' }, { concurrentStreams: 1 }]) {
    t.equal((await call(gw, 'POST', '/admin/keys', admin, { owner: 'alice', limits: bad })).status, 400, JSON.stringify(bad))
    t.equal((await call(gw, 'POST', '/v1/me/keys', alice, { limits: bad })).status, 400, JSON.stringify(bad))
  }
})
