// Requests per minute per user (by role, with per-user overrides) and per API key, with exact
// counts, the 429 in each protocol, x-ratelimit-* headers on every authenticated answer, and
// malformed limits refused at load.
import t, { type Test } from 'tap'
import { ConfigError, validateConfig } from '../src/config/load.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { chat } from './helpers/limits.js'

async function setup (t: Test, limits: Record<string, unknown>): Promise<Gateway> {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  return startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { limits })
}

const get = (gw: Gateway, path: string, headers: Record<string, string>): Promise<Response> => fetch(`${gw.url}${path}`, { headers })

t.test('requests per minute per user: exact count, per-user override, 429 in each protocol', async (t) => {
  const gw = await setup(t, { requestsPerMinute: { user: 3 }, users: { vip: { requestsPerMinute: 5 } } })
  const alice = gw.auth('user', 'alice')
  const remaining: Array<string | null> = []
  for (let i = 0; i < 3; i++) {
    const res = await get(gw, '/v1/models', alice)
    t.equal(res.status, 200)
    t.equal(res.headers.get('x-ratelimit-limit'), '3')
    remaining.push(res.headers.get('x-ratelimit-remaining'))
  }
  t.same(remaining, ['2', '1', '0'])
  const refused = await get(gw, '/v1/models', alice)
  t.equal(refused.status, 429)
  t.match(await refused.json(), { error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: /^rate limit exceeded: 3 requests per minute for user 'alice'; retry in / } })
  t.ok(Number(refused.headers.get('retry-after')) > 0 && Number(refused.headers.get('retry-after')) <= 60)
  const ollama = await get(gw, '/api/tags', alice)
  t.equal(ollama.status, 429)
  t.match(await ollama.json(), { error: /^rate limit exceeded: 3 requests per minute for user 'alice'/ })

  const vip = gw.auth('user', 'vip')
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) statuses.push((await get(gw, '/api/tags', vip)).status)
  t.same(statuses, [200, 200, 200, 200, 200, 429], 'limits.users.vip.requestsPerMinute: 5')
  t.equal((await get(gw, '/healthz', {})).status, 200, 'public routes are not counted')
  t.equal((await get(gw, '/healthz', {})).headers.get('x-ratelimit-limit'), null)
})

t.test("an API key's own limit counts next to its owner's; the tighter one's headers show", async (t) => {
  const gw = await setup(t, { requestsPerMinute: { user: 10 } })
  const { key, record } = gw.app.gateway.keys.create({ owner: 'alice', role: 'user', createdBy: 'test', limits: { requestsPerMinute: 2 } })
  const viaKey = { authorization: `Bearer ${key}` }
  const first = await get(gw, '/v1/models', viaKey)
  t.equal(first.headers.get('x-ratelimit-limit'), '2')
  t.equal(first.headers.get('x-ratelimit-remaining'), '1')
  t.equal((await chat(gw, { 'x-api-key': key })).status, 200)
  const refused = await chat(gw, viaKey)
  t.equal(refused.status, 429)
  t.equal(refused.json().error.message, `rate limit exceeded: 2 requests per minute for API key ${record.id}; retry in ${refused.headers.get('retry-after')} s`)
  // The owner's own count went on (3 of 10, the refused one included): a login token still works.
  const owner = await get(gw, '/v1/models', gw.auth('user', 'alice'))
  t.equal(owner.status, 200)
  t.equal(owner.headers.get('x-ratelimit-limit'), '10')
  t.equal(owner.headers.get('x-ratelimit-remaining'), '6')
})

t.test('x-ratelimit-* headers on every authenticated answer, errors included', async (t) => {
  const gw = await setup(t, { requestsPerMinute: { user: 100 } })
  const alice = gw.auth('user', 'alice')
  const answers = [
    await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{"model": 5}' }),
    await fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{"model":"nope","messages":[]}' }),
    await get(gw, '/v1/me/keys', alice),
    await get(gw, '/admin/keys', alice),
  ]
  t.same(answers.map((a) => a.status), [400, 404, 200, 403])
  t.same(answers.map((a) => a.headers.get('x-ratelimit-remaining')), ['99', '98', '97', '96'])
  t.ok(answers.every((a) => a.headers.get('x-ratelimit-limit') === '100' && a.headers.get('x-ratelimit-reset') !== null))
})

t.test('per-client limits (login): an IPv6 client counted by its /64, an IPv4-mapped address as the IPv4 one', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  // Behind a proxy, so that each attempt can come from the address the test names.
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { trustProxy: true }, auth: { loginPerMinute: 2 } })
  const login = async (from: string): Promise<number> => (await fetch(`${gw.url}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': from }, body: JSON.stringify({ username: 'nobody', password: 'guess' }),
  })).status
  t.same([await login('2001:db8:1:2::1'), await login('2001:db8:1:2::2'), await login('2001:db8:1:2:ffff:ffff:ffff:ffff')], [401, 401, 429],
    'every address of one /64 draws on one allowance')
  t.equal(await login('2001:db8:1:3::1'), 401, 'the next /64 has its own')
  t.same([await login('192.0.2.7'), await login('::ffff:192.0.2.7'), await login('192.0.2.7')], [401, 401, 429], 'IPv4 and its IPv4-mapped form count as one')
  t.equal(await login('192.0.2.8'), 401, 'another IPv4 address has its own')
})

t.test('malformed limits in the config are refused, each by its path', async (t) => {
  let problems: string[] = []
  try {
    validateConfig({
      limits: {
        requestsPerMinute: { user: -1 },
        tokensPerDay: { admin: 'lots' },
        concurrentStreams: { guest: 2 },
        users: { alice: { tokensPerMonth: 1.5, colour: 'red' }, 'bad name!': {} },
        completionEstimate: 0,
      },
      backends: [{ name: 'a', type: 'ollama', url: 'http://127.0.0.1:9' }],
    })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problems = err.problems
  }
  t.same(problems.sort(), [
    'limits.completionEstimate: must be integer to be greater or equal to 1',
    'limits.concurrentStreams.guest: unknown key',
    'limits.requestsPerMinute.user: must be integer to be greater or equal to 0',
    'limits.tokensPerDay.admin: must be integer',
    'limits.users.alice.colour: unknown key',
    'limits.users.alice.tokensPerMonth: must be integer',
    'limits.users.bad name!: unknown key',
  ])
})
