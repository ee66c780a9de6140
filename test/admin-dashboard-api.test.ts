// The dashboard's server side without a browser: the page and its files, session tokens (the
// CSRF guard, bound to the browser session), and the JSON of /admin/status, /admin/activity and
// /admin/config after real requests through real emulated backends.
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { hashPassword } from '../src/auth/passwords.js'
import { validateConfig } from '../src/config/load.js'
import { REDACTED, redactConfig } from '../src/config/redact.js'
import { loadUi } from '../src/admin/ui.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { bearer, call, claims } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

const XINF_KEY = 'xinf-key-7d1f0c2a9b'

interface Setup { gw: Gateway, o: OllamaEmulator, x: XinferenceEmulator, admin: string, user: string }

/** An Ollama (one slot) and a Xinference (with an API key) behind a gateway; ada is an admin, alice a user. */
async function setup (t: Test, extra: Record<string, unknown> = {}): Promise<Setup> {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest', 'qwen3:8b'], loaded: ['llama3.2:latest'], version: '0.12.3' })
  const x = await XinferenceEmulator.start({ apiKey: XINF_KEY, models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [
    { name: 'gpu1', type: 'ollama', url: o.url, maxConcurrent: 1 },
    { name: 'xinf', type: 'xinference', url: `${x.url}/v1`, apiKey: XINF_KEY, maxConcurrent: 3 },
  ], extra)
  const { users, sessions } = gw.app.gateway
  await users.add({ name: 'ada', password: 'ada-password', role: 'admin' })
  await users.add({ name: 'alice', password: 'alice-password' })
  return { gw, o, x, admin: sessions.startBrowser('ada', 600).cookie, user: sessions.startBrowser('alice', 600).cookie }
}

const cookie = (value: string): { cookie: string } => ({ cookie: `chatgate_session=${value}` })
const DASHBOARD = { 'x-chatgate-dashboard': '1' }

function tokenRequest (gw: Gateway, headers: Record<string, string>): Promise<Response> {
  return fetch(`${gw.url}/admin/session-token`, { method: 'POST', headers })
}

/** Polls until `probe` gives a value, or fails the test with what it waited for. */
async function until<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

t.test('session tokens: only for a signed-in admin, only from the dashboard\'s own page, and dead after sign-out', async (t) => {
  const { gw, admin, user } = await setup(t)
  const host = new URL(gw.url).host

  t.equal((await tokenRequest(gw, DASHBOARD)).status, 401, 'no browser session')
  const noHeader = await tokenRequest(gw, cookie(admin))
  t.equal(noHeader.status, 403, 'without the dashboard header (what a cross-site form sends)')
  t.match(await noHeader.json(), { error: { code: 'permission_denied', message: /x-chatgate-dashboard/ } })
  for (const origin of ['http://evil.example', `https://${host}.evil.example`, 'null']) {
    t.equal((await tokenRequest(gw, { ...cookie(admin), ...DASHBOARD, origin })).status, 403, `origin ${origin}`)
  }
  t.equal((await tokenRequest(gw, { ...cookie(admin), ...DASHBOARD, 'sec-fetch-site': 'cross-site' })).status, 403, 'a cross-site fetch')
  t.equal((await tokenRequest(gw, { ...cookie(user), ...DASHBOARD })).status, 403, 'a user who is not an admin')

  const res = await tokenRequest(gw, { ...cookie(admin), ...DASHBOARD, origin: gw.url, 'sec-fetch-site': 'same-origin' })
  t.equal(res.status, 200)
  t.equal(res.headers.get('cache-control'), 'no-store')
  const body = await res.json() as { token: string, expires_at: string, user: string }
  t.equal(body.user, 'ada')
  const session = gw.app.gateway.sessions.browserSession(admin)!
  t.match(claims(body.token), { sub: 'ada', role: 'admin', sid: session.id })
  const lifetime = Date.parse(body.expires_at) - Date.now()
  t.ok(lifetime > 890_000 && lifetime <= 900_000, `lives 15 minutes (${lifetime} ms)`)
  t.equal((await tokenRequest(gw, { ...cookie(admin), ...DASHBOARD })).status, 200, 'no Origin (same-origin GET-like requests) is fine')

  t.equal((await call(gw, 'GET', '/admin/status', bearer(body.token))).status, 200, 'the token opens the admin API')
  const out = await fetch(`${gw.url}/auth/sign-out`, { method: 'POST', redirect: 'manual', headers: cookie(admin) })
  t.equal(out.status, 303)
  const after = await call(gw, 'GET', '/admin/status', bearer(body.token))
  t.equal(after.status, 401, 'signed out: the token died with its session')
  t.equal(after.json.error.code, 'session_ended')
  t.equal((await tokenRequest(gw, { ...cookie(admin), ...DASHBOARD })).status, 401, 'and the old cookie buys no new one')
})

t.test('GET /admin: the page for admins, the login page for strangers, a 403 page for users; only known files', async (t) => {
  const { gw, admin, user } = await setup(t)
  const html = { accept: 'text/html' }
  const stranger = await fetch(`${gw.url}/admin`, { redirect: 'manual', headers: html })
  t.equal(stranger.status, 302)
  t.equal(stranger.headers.get('location'), '/auth/sign-in?rd=%2Fadmin')
  t.equal((await fetch(`${gw.url}/admin`, { redirect: 'manual', headers: { ...html, ...gw.auth('admin') } })).status, 302, 'a bearer token is no browser session')

  const page = await fetch(`${gw.url}/admin`, { headers: { ...html, ...cookie(admin) } })
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.equal(page.headers.get('cache-control'), 'no-store')
  t.equal(page.headers.get('x-frame-options'), 'DENY')
  const csp = page.headers.get('content-security-policy') ?? ''
  t.match(csp, /default-src 'self'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)
  const text = await page.text()
  t.notMatch(text, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
  t.notMatch(text, /<style|\sstyle=/, 'no inline style')

  const refused = await fetch(`${gw.url}/admin`, { headers: { ...html, ...cookie(user) } })
  t.equal(refused.status, 403)
  t.match(refused.headers.get('content-type'), /^text\/html/)
  t.match(await refused.text(), /dashboard is for admins.*<strong>alice<\/strong>/s)

  // Every file the page and its scripts refer to is served, with its type; nothing else is.
  const assets = [...text.matchAll(/(?:src|href)="(\/admin\/assets\/[^"]+)"/g)].map((m) => m[1]!)
  const seen = new Set<string>()
  while (assets.length > 0) {
    const path = assets.shift()!
    if (seen.has(path)) continue
    seen.add(path)
    const res = await fetch(`${gw.url}${path}`)
    t.equal(res.status, 200, path)
    t.match(res.headers.get('content-type'), path.endsWith('.css') ? /^text\/css/ : /^text\/javascript/)
    t.equal(res.headers.get('x-content-type-options'), 'nosniff')
    const body = await res.text()
    for (const m of body.matchAll(/from '\.\/([a-z-]+\.js)'/g)) assets.push(`/admin/assets/${m[1]!}`)
    t.notMatch(body, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, `${path} never parses data as markup`)
    const again = await fetch(`${gw.url}${path}`, { headers: { 'if-none-match': res.headers.get('etag')! } })
    t.equal(again.status, 304, `${path} revalidates`)
  }
  t.ok(seen.size >= 7, `the page's files: ${[...seen].join(', ')}`)
  t.throws(() => loadUi(new URL('file:///nonexistent/admin-ui/')), /dashboard's file \/nonexistent\/admin-ui\/\S+ cannot be read/, 'a package without its files says so')
  for (const path of ['/admin/assets/nope.js', '/admin/assets/..%2Fpackage.json', '/admin/assets/../../package.json', '/admin/assets/index.html']) {
    // Without credentials every unknown path is a 401 (the gateway's rule), with them a 404.
    t.equal((await fetch(`${gw.url}${path}`)).status, 401, `${path}: not a public file`)
    t.equal((await fetch(`${gw.url}${path}`, { headers: gw.auth('admin') })).status, 404, `${path}: no such route`)
  }
})

t.test('GET /admin/status: backends with health, slots and models, the queue per model; never an API key', async (t) => {
  const { gw, o, x } = await setup(t)
  let open!: () => void
  o.mode = { gate: new Promise<void>((resolve) => { open = resolve }) }
  // One slot on gpu1: the first chat holds it, the second waits in the queue.
  const chat = (): Promise<Response> => fetch(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: { ...gw.auth('user', 'alice'), 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], stream: false }),
  })
  const chats = [chat(), chat()]
  const busy = await until('a chat running and one waiting', async () => {
    const status = await call(gw, 'GET', '/admin/status', gw.auth('admin'))
    const gpu1 = status.json.backends.find((b: { name: string }) => b.name === 'gpu1')
    return gpu1.inFlight === 1 && status.json.queues.length === 1 ? status : undefined
  })
  t.same(busy.json.queues, [{ model: 'llama3.2', waiting: 1 }])
  const healthy = { up: true, discovered: true, lastError: null, downUntil: null }
  t.same(busy.json.backends, [
    { name: 'gpu1', type: 'ollama', url: o.url, ...healthy, inFlight: 1, maxConcurrent: 1, version: '0.12.3', models: [{ name: 'llama3.2:latest', loaded: true }, { name: 'qwen3:8b', loaded: false }] },
    { name: 'xinf', type: 'xinference', url: x.url, ...healthy, inFlight: 0, maxConcurrent: 3, version: null, models: [{ name: 'qwen-a1b2', loaded: true }] },
  ], 'each model once (by its upstream id), the URL without its /v1 path')
  t.same(busy.json.certificates, [])
  t.equal(busy.json.tlsMode, 'off')
  t.ok(Date.parse(busy.json.startedAt) <= Date.now())
  t.notOk(JSON.stringify(busy.json).includes(XINF_KEY), 'the backend API key is nowhere in the answer')
  open()
  t.same((await Promise.all(chats)).map((r) => r.status), [200, 200])
  const idle = await call(gw, 'GET', '/admin/status', gw.auth('admin'))
  t.equal(idle.json.backends[0].inFlight, 0)
  t.same(idle.json.queues, [])

  // A backend that cannot be reached: down, with why and until when.
  await x.close()
  await gw.app.gateway.pool.refresh()
  const down = (await call(gw, 'GET', '/admin/status', gw.auth('admin'))).json.backends[1]
  t.equal(down.up, false)
  t.match(down.lastError, /discovery failed/)
  t.ok(Date.parse(down.downUntil) > Date.now() - 1000, 'when it is tried again')
})

t.test('GET /admin/status with HTTPS: each certificate with its names, expiry and renewal', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['localhost', 'chat.lab.test'], httpPort: 0 } })
  // Asked in-process: this self-signed certificate is trusted by no client here.
  const res = await gw.app.inject({ method: 'GET', url: '/admin/status', headers: gw.auth('admin') })
  t.equal(res.statusCode, 200)
  const status = res.json()
  t.equal(status.tlsMode, 'self-signed')
  t.equal(status.certificates.length, 1)
  t.match(status.certificates[0], { names: ['localhost', 'chat.lab.test'], failures: 0 })
  t.ok(Date.parse(status.certificates[0].notAfter) > Date.parse(status.certificates[0].renewAt), 'renewed before it expires')
  t.ok(Date.parse(status.certificates[0].renewAt) > Date.now())
})

t.test('GET /admin/activity: every minute of the period, the requests counted in the minute they came', async (t) => {
  // The usage timer never fires by itself here: the route must write what waits before it reads.
  const { gw, o } = await setup(t, { store: { usageFlushMs: 600_000 } })
  const key = gw.app.gateway.keys.create({ owner: 'alice', role: 'user', name: 'load', createdBy: 'ada' }).key
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
  o.mode = { firstTokenDelayMs: 40 }
  for (let i = 0; i < 5; i++) {
    const stream = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: `question ${i}` }], stream: true })
    for await (const _chunk of stream) { /* read to the end */ }
  }
  o.mode = { httpError: { status: 500, message: 'out of memory' } }
  for (let i = 0; i < 2; i++) await t.rejects(openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] }))
  // One request two hours ago: outside the last hour, inside the last three.
  gw.app.gateway.usage.record({ ts: Date.now() - 2 * 3600_000, user: 'bob', role: 'user', model: 'llama3.2', endpoint: '/api/chat', promptTokens: 3, completionTokens: 4, estimated: false, durationMs: 10, status: 200 })

  const threeHours = (await call(gw, 'GET', '/admin/activity?minutes=180', gw.auth('admin'))).json
  t.equal(threeHours.buckets.length, 180)
  t.equal(threeHours.buckets.reduce((n: number, b: { requests: number }) => n + b.requests, 0), 8, 'the old request is in the last three hours')

  const before = Date.now()
  const res = await call(gw, 'GET', '/admin/activity?minutes=60', gw.auth('admin'))
  t.equal(res.status, 200)
  const { minutes, buckets } = res.json as { minutes: number, buckets: Array<{ at: string, requests: number, errors: number, ttftMsAvg: number | null, tokens: number }> }
  t.equal(minutes, 60)
  t.equal(buckets.length, 60)
  buckets.forEach((b, i) => {
    if (i > 0) t.equal(Date.parse(b.at) - Date.parse(buckets[i - 1]!.at), 60_000, `minute ${i} follows minute ${i - 1}`)
  })
  const lastMinute = Date.parse(buckets[59]!.at)
  t.ok(lastMinute <= Date.now() && lastMinute > before - 60_000, 'the last bucket is the current minute')
  t.equal(buckets.reduce((n, b) => n + b.requests, 0), 7, 'five answered and two failed chats, all flushed')
  t.equal(buckets.reduce((n, b) => n + b.errors, 0), 2)
  const usage = await call(gw, 'GET', `/admin/usage?from=${new Date(Date.parse(buckets[0]!.at)).toISOString()}`, gw.auth('admin'))
  t.equal(buckets.reduce((n, b) => n + b.tokens, 0), usage.json.totals.totalTokens, 'tokens as the usage report counts them')
  t.ok(usage.json.totals.totalTokens > 0)
  for (const b of buckets) {
    if (b.requests === 0) t.same(b, { at: b.at, requests: 0, errors: 0, ttftMsAvg: null, tokens: 0 })
  }
  const timed = buckets.filter((b) => b.ttftMsAvg !== null)
  t.ok(timed.length > 0 && timed.every((b) => b.ttftMsAvg! >= 40), `first tokens came after the backend's 40 ms (${timed.map((b) => b.ttftMsAvg).join(', ')})`)

  t.equal((await call(gw, 'GET', '/admin/activity', gw.auth('admin'))).json.minutes, 60, '60 minutes by default')
  t.equal((await call(gw, 'GET', '/admin/activity?minutes=1440', gw.auth('admin'))).json.buckets.length, 1440)
  t.equal((await call(gw, 'GET', '/admin/activity?minutes=1', gw.auth('admin'))).json.buckets.length, 1)

  for (const bad of ['0', '1441', '99999', 'abc', '1.5', '-1', '']) {
    const answer = await call(gw, 'GET', `/admin/activity?minutes=${bad}`, gw.auth('admin'))
    t.equal(answer.status, 400, `minutes=${bad}`)
    t.same(answer.json, { error: { message: "invalid query parameter 'minutes': must be a whole number of minutes, 1 to 1440", type: 'invalid_request_error', param: null, code: 'invalid_request' } })
  }
  const unknown = await call(gw, 'GET', '/admin/activity?minutes=5&hours=1', gw.auth('admin'))
  t.equal(unknown.status, 400)
  t.match(unknown.json.error.message, /unknown query parameter 'hours'/)
})

t.test('the JSON routes are for admins only', async (t) => {
  const { gw, admin } = await setup(t)
  const userKey = gw.app.gateway.keys.create({ owner: 'alice', role: 'user', createdBy: 'ada' }).key
  for (const path of ['/admin/status', '/admin/activity?minutes=60', '/admin/activity?minutes=0', '/admin/config']) {
    const user = await call(gw, 'GET', path, gw.auth('user', 'alice'))
    t.equal(user.status, 403, `${path}: a user's token`)
    t.match(user.json, { error: { code: 'permission_denied', message: /admins only/ } })
    t.equal((await call(gw, 'GET', path, bearer(userKey))).status, 403, `${path}: a user's key`)
    t.equal((await call(gw, 'GET', path)).status, 401, `${path}: nothing`)
    t.equal((await call(gw, 'GET', path, cookie(admin))).status, 401, `${path}: the session cookie alone is not a credential of the API`)
  }
})

const SECRETS = { jwt: 'jwt-secret-0123456789abcdef0123456789abcdef', oidc: 'oidc-secret-5e1d', github: 'github-secret-77aa', eab: 'eab-hmac-c0ffee', bio: 'bio-password-41b7' }

t.test('GET /admin/config: the running config with every secret redacted, and the reloads so far', async (t) => {
  const hash = await hashPassword('carol-password')
  const { gw } = await setup(t, {
    auth: {
      jwt: { secret: SECRETS.jwt },
      users: [{ username: 'carol', passwordHash: hash, role: 'admin' }],
      signIn: {
        providers: [
          { type: 'oidc', name: 'lab', issuer: 'https://id.lab.example/realms/lab', clientId: 'chatgate', clientSecret: SECRETS.oidc },
          { type: 'github', name: 'github', clientId: 'gh-app', clientSecret: SECRETS.github, org: 'lab' },
        ],
      },
    },
    tls: { acme: { eab: { kid: 'kid-1', hmacKey: SECRETS.eab } } },
    biochatter: { upstream: `http://bio:${SECRETS.bio}@127.0.0.1:9` },
  })
  const res = await call(gw, 'GET', '/admin/config', gw.auth('admin'))
  t.equal(res.status, 200)
  const text = JSON.stringify(res.json)
  for (const secret of [...Object.values(SECRETS), XINF_KEY, hash, hash.split('$').pop()!]) t.notOk(text.includes(secret), `${secret.slice(0, 12)}… is nowhere in the answer`)
  const config = res.json.config
  t.equal(config.auth.jwt.secret, REDACTED)
  t.equal(config.auth.users[0].passwordHash, REDACTED)
  t.equal(config.auth.users[0].username, 'carol', 'what is no secret stays')
  t.same(config.auth.signIn.providers.map((p: { clientSecret: string }) => p.clientSecret), [REDACTED, REDACTED])
  t.equal(config.auth.signIn.providers[0].clientId, 'chatgate')
  t.equal(config.tls.acme.eab.hmacKey, REDACTED)
  t.equal(config.tls.acme.eab.kid, 'kid-1')
  t.equal(config.biochatter.upstream, `http://${REDACTED}@127.0.0.1:9`)
  t.equal(config.backends[1].apiKey, REDACTED)
  t.same(config.backends.map((b: { name: string }) => b.name), ['gpu1', 'xinf'])
  t.equal(config.backends[0].url, gw.config.backends[0]!.url)
  t.equal(config.routing.discoveryIntervalMs, 60_000)
  t.same(res.json.reloads, { file: null, succeeded: 0, failed: 0, last: null, loadedAt: new Date(gw.app.reloads.loadedAt).toISOString() })
  t.equal(gw.app.gateway.config.auth.jwt.secret, SECRETS.jwt, 'the running config itself is untouched')
})

t.test('redactConfig: secrets in URLs, header values and any field named like a secret', async (t) => {
  const config = validateConfig({
    backends: [{ name: 'v', type: 'openai', url: 'https://svc:pw-in-url-1@vllm.lab.example/v1', apiKey: 'sk-backend-2' }],
    store: { redis: { url: 'redis://:redis-pass-3@redis.lab.example:6379/0' } },
  })
  const redacted = redactConfig(config) as any
  t.equal(redacted.store.redis.url, `redis://${REDACTED}@redis.lab.example:6379/0`)
  t.equal(redacted.backends[0].url, `https://${REDACTED}@vllm.lab.example/v1`)
  t.equal(redacted.backends[0].apiKey, REDACTED)
  const more = redactConfig({
    ...config,
    extra: { headers: { 'x-api-key': 'hdr-4', Authorization: 'Bearer hdr-5' }, link: 'https://h.example/x?token=q-6&page=2', accessToken: 't-7', list: ['rediss://u:list-8@h'] },
  } as any) as any
  t.same(more.extra.headers, { 'x-api-key': REDACTED, Authorization: REDACTED })
  t.equal(more.extra.link, `https://h.example/x?token=${REDACTED}&page=2`)
  t.equal(more.extra.accessToken, REDACTED)
  t.same(more.extra.list, [`rediss://${REDACTED}@h`])
  const text = JSON.stringify(more)
  for (const secret of ['pw-in-url-1', 'sk-backend-2', 'redis-pass-3', 'hdr-4', 'hdr-5', 'q-6', 't-7', 'list-8']) t.notOk(text.includes(secret), secret)
  t.equal(config.store.redis!.url, 'redis://:redis-pass-3@redis.lab.example:6379/0', 'the config itself is untouched')
})
