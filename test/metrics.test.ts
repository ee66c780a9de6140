// /metrics after a scripted workload: every series with the values the workload implies; who may
// read it (admins, or anyone on metrics.listen); /readyz; the overhead header on every answer.
// Histograms are ChatGate's own (plain arrays): their text must be exactly prom-client's.
import t, { type Test } from 'tap'
import { Histogram, Registry } from 'prom-client'
import { Agent, fetch as undiciFetch } from 'undici'
import type { Pool } from '../src/backends/pool.js'
import type { ReloadHistory, ReloadResult } from '../src/config/reload-result.js'
import { PlainHistogram } from '../src/metrics/histogram.js'
import { GatewayMetrics } from '../src/metrics/metrics.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { startUpstream } from './helpers/proxy-upstream.js'
import { send } from './helpers/proxy-client.js'

interface Sample { name: string, labels: Record<string, string>, value: number }

function parse (text: string): Sample[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((line) => {
    const m = /^([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)!
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]))
    return { name: m[1]!, labels, value: Number(m[3]) }
  })
}

/** The value of the one sample with these labels (among possibly more), or undefined. */
function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`)
  return found[0]?.value
}

/**
 * Every histogram series in a scrape is well formed: buckets cumulative in `le` order, the +Inf
 * bucket equal to _count, a _sum. Returns how many series it checked.
 */
function histogramsWellFormed (t: Test, samples: Sample[]): number {
  const series = new Map<string, Sample[]>()
  // ChatGate's own (prom-client's process and GC histograms aside).
  for (const s of samples.filter((s) => s.name.endsWith('_bucket') && !s.name.startsWith('chatgate_nodejs_'))) {
    const { le: _le, ...rest } = s.labels
    const key = `${s.name.slice(0, -'_bucket'.length)} ${JSON.stringify(rest)}`
    series.set(key, [...series.get(key) ?? [], s])
  }
  for (const [key, buckets] of series) {
    const [name, labelText] = [key.slice(0, key.indexOf(' ')), key.slice(key.indexOf(' ') + 1)]
    const labels = JSON.parse(labelText) as Record<string, string>
    const bounds = buckets.map((b) => b.labels.le === '+Inf' ? Infinity : Number(b.labels.le))
    t.same(bounds, [...bounds].sort((a, b) => a - b), `${key}: buckets in le order`)
    t.equal(bounds.at(-1), Infinity, `${key}: ends with +Inf`)
    t.ok(buckets.every((b, i) => i === 0 || b.value >= buckets[i - 1]!.value), `${key}: cumulative`)
    t.equal(buckets.at(-1)!.value, value(samples, `${name}_count`, labels), `${key}: +Inf is _count`)
    t.ok(value(samples, `${name}_sum`, labels)! >= 0, `${key}: has a _sum`)
  }
  return series.size
}

async function scrape (gw: Gateway): Promise<Sample[]> {
  const res = await send(gw.url, '/metrics', { headers: gw.auth('admin') })
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  return parse(res.text)
}

const chat = (gw: Gateway, path: string, model: string, sub = 'alice', stream = false): ReturnType<typeof send> =>
  send(gw.url, path, { method: 'POST', headers: { ...gw.auth('user', sub), 'content-type': 'application/json' }, body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'Hi there!' }] }) })

async function until (t: Test, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.pass(what)
}

t.test('every series, with the values of a scripted workload', async (t) => {
  const busy = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  busy.mode = { busy: true }
  const ok = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  const x = await XinferenceEmulator.start()
  t.teardown(() => Promise.all([busy.close(), ok.close(), x.close()]))
  const gw = await startGateway(t, [
    { name: 'busy', type: 'ollama', url: busy.url },
    { name: 'ok', type: 'ollama', url: ok.url },
    { name: 'x', type: 'xinference', url: x.url, maxConcurrent: 1 },
  ], {
    limits: { users: { limited: { requestsPerMinute: 1 }, spent: { tokensPerDay: 1 }, solo: { concurrentStreams: 1 } } },
  })
  await gw.app.gateway.pool.refresh()

  // Four chats on the Ollama pair: every one that went to "busy" first was retried on "ok".
  let prompt = 0
  let completion = 0
  for (let i = 0; i < 4; i++) {
    const res = await chat(gw, '/api/chat', 'llama3.2')
    t.equal(res.status, 200)
    prompt += res.json().prompt_eval_count
    completion += res.json().eval_count
  }
  const busyTries = busy.requests.filter((r) => r.path === '/api/chat').length
  // Refusals: an unknown model, requests per minute, a spent quota.
  t.equal((await chat(gw, '/api/chat', 'no-such-model')).status, 404)
  t.equal((await chat(gw, '/api/chat', 'llama3.2', 'limited')).status, 200)
  t.equal((await chat(gw, '/api/chat', 'llama3.2', 'limited')).status, 429)
  t.equal((await chat(gw, '/api/chat', 'llama3.2', 'spent')).status, 429)

  // Xinference with one slot: a held stream, a second chat queued behind it, a third refused (concurrency).
  let open!: () => void
  // Pieces 10 ms apart: the streams' generation takes measurable time (tokens per second).
  x.mode = { gate: new Promise<void>((resolve) => { open = resolve }), chunkDelayMs: 10 }
  const held = chat(gw, '/v1/chat/completions', 'qwen2.5-instruct', 'solo', true)
  await x.waitForRequests(1, '/v1/chat/completions')
  const queued = chat(gw, '/v1/chat/completions', 'qwen2.5-instruct', 'alice', true)
  await until(t, 'the second chat waits in the queue', async () => value(await scrape(gw), 'chatgate_queue_depth', { model: 'qwen2.5-instruct' }) === 1)
  const during = await scrape(gw)
  t.equal(value(during, 'chatgate_backend_slots_in_use', { backend: 'x' }), 1)
  t.equal((await chat(gw, '/v1/chat/completions', 'qwen2.5-instruct', 'solo', true)).status, 429, 'solo may run one chat at once')
  open()
  t.equal((await held).status, 200)
  t.equal((await queued).status, 200)

  const m = await scrape(gw)
  t.equal(value(m, 'chatgate_requests_total', { surface: 'ollama', model: 'llama3.2', backend: 'ok', status: '200' }), 5, 'four of alice\'s and one of limited\'s')
  t.equal(value(m, 'chatgate_requests_total', { surface: 'ollama', model: '', backend: '', status: '404' }), 1, 'the unknown model, without its name')
  t.equal(value(m, 'chatgate_requests_total', { surface: 'openai', model: 'qwen2.5-instruct', backend: 'x', status: '200' }), 2)
  t.equal(value(m, 'chatgate_rejections_total', { reason: 'rate' }), 1)
  t.equal(value(m, 'chatgate_rejections_total', { reason: 'quota' }), 1)
  t.equal(value(m, 'chatgate_rejections_total', { reason: 'concurrency' }), 1)
  t.ok(busyTries > 0, 'some chats went to the busy backend first')
  t.equal(value(m, 'chatgate_upstream_errors_total', { backend: 'busy', code: 'server_busy' }), busyTries)
  t.equal(value(m, 'chatgate_upstream_retries_total', { backend: 'busy' }), busyTries)
  // Tokens: the non-streamed Ollama answers' own counts (four of alice's, one of limited's: the same each time).
  t.equal(value(m, 'chatgate_tokens_total', { direction: 'prompt', model: 'llama3.2', backend: 'ok' }), prompt + prompt / 4)
  t.equal(value(m, 'chatgate_tokens_total', { direction: 'completion', model: 'llama3.2', backend: 'ok' }), completion + completion / 4)
  t.equal(value(m, 'chatgate_time_to_first_token_seconds_count', { model: 'qwen2.5-instruct', backend: 'x' }), 2)
  t.equal(value(m, 'chatgate_tokens_per_second_count', { model: 'qwen2.5-instruct', backend: 'x' }), 2, 'streams only')
  t.equal(value(m, 'chatgate_tokens_per_second_count', { model: 'llama3.2', backend: 'ok' }), undefined, 'not of whole answers')
  t.equal(value(m, 'chatgate_queue_wait_seconds_count', { model: 'qwen2.5-instruct' }), 1, 'one chat waited')
  t.equal(value(m, 'chatgate_queue_depth', { model: 'qwen2.5-instruct' }), undefined, 'nobody waits now')
  t.ok(value(m, 'chatgate_request_duration_seconds_count', { surface: 'openai' })! >= 3)
  t.equal(value(m, 'chatgate_backend_up', { backend: 'ok' }), 1)
  t.equal(value(m, 'chatgate_backend_up', { backend: 'busy' }), 1, 'busy answers: it is up')
  t.equal(value(m, 'chatgate_backend_slots_in_use', { backend: 'x' }), 0)
  t.equal(value(m, 'chatgate_backend_slots', { backend: 'x' }), 1)
  t.equal(value(m, 'chatgate_model_loaded', { backend: 'ok', model: 'llama3.2:latest' }), 1)
  t.equal(value(m, 'chatgate_model_loaded', { backend: 'x', model: 'qwen2.5-instruct' }), 1)
  t.ok(value(m, 'chatgate_process_resident_memory_bytes')! > 0, 'process metrics too')
  // Queue wait: one observation, so exactly one step from 0 to 1 across the buckets.
  const waits = m.filter((s) => s.name === 'chatgate_queue_wait_seconds_bucket')
  t.equal(waits.length, 15, '14 bounds and +Inf')
  t.equal(waits.filter((s, i) => s.value !== (i === 0 ? 0 : waits[i - 1]!.value)).length, waits[0]!.value === 1 ? 0 : 1)
  t.equal(waits.at(-1)!.value, 1)
  t.ok(histogramsWellFormed(t, m) >= 6, 'durations (two surfaces), time to first token, tokens per second, queue wait')

  await ok.close()
  await busy.close()
  await gw.app.gateway.pool.refresh()
  t.equal(value(await scrape(gw), 'chatgate_backend_up', { backend: 'ok' }), 0, 'a backend that stopped answering is down')
})

t.test('certificate expiry, with TLS on', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { tls: { mode: 'self-signed', names: ['localhost'], httpPort: 0 } })
  const insecure = new Agent({ connect: { rejectUnauthorized: false, servername: 'localhost' } })
  t.teardown(() => insecure.close())
  const res = await undiciFetch(`${gw.url}/metrics`, { headers: gw.auth('admin'), dispatcher: insecure })
  const expiry = value(parse(await res.text()), 'chatgate_certificate_expiry_seconds', { names: 'localhost' })!
  t.ok(expiry > 86400 && expiry < 800 * 86400, `the self-signed certificate expires in days, not now (${expiry} s)`)
  const ready = await undiciFetch(`${gw.url}/readyz`, { dispatcher: insecure })
  t.equal(ready.status, 200, 'ready: a certificate is in service')
})

t.test('who reads /metrics: admins on the main port, or anyone on metrics.listen (and then only there)', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }])
  t.equal((await send(gw.url, '/metrics')).status, 401)
  t.equal((await send(gw.url, '/metrics', { headers: gw.auth('user') })).status, 403)
  const admin = await send(gw.url, '/metrics', { headers: gw.auth('admin') })
  t.match(admin.headers['content-type'], /^text\/plain; version=0.0.4/)
  t.equal(gw.app.metricsUrl, undefined)

  const own = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { metrics: { listen: { port: 0 } } })
  const scraped = await fetch(own.app.metricsUrl!)
  t.equal(scraped.status, 200, 'no credentials on the metrics listener')
  t.match(await scraped.text(), /chatgate_backend_up\{backend="o"\} 1/)
  t.equal((await fetch(own.app.metricsUrl!.replace('/metrics', '/api/tags'))).status, 404, 'nothing else there')
  t.equal((await send(own.url, '/metrics', { headers: own.auth('admin') })).status, 404, 'not on the main port')

  const off = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { metrics: { enabled: false } })
  t.equal((await send(off.url, '/metrics', { headers: off.auth('admin') })).status, 404)
})

t.test('/readyz: ready with a healthy backend, 503 naming the problem without one; both probes need no credentials', async (t) => {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }])
  t.same((await send(gw.url, '/readyz')).json(), { status: 'ready', backends: { healthy: 1, total: 1 } })
  await o.close()
  await gw.app.gateway.pool.refresh()
  const down = await send(gw.url, '/readyz')
  t.equal(down.status, 503)
  t.same(down.json(), { status: 'not ready', backends: { healthy: 0, total: 1 }, problems: ['no healthy backend (of 1)'] })
  t.equal((await send(gw.url, '/healthz')).status, 200, 'alive all the same')
})

t.test('the overhead header: on chats (streamed and whole), errors, probes and proxied apps, without the upstream\'s time', async (t) => {
  const o = await OllamaEmulator.start()
  const app = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'server-timing': 'db;dur=7', 'content-type': 'text/plain' })
    res.end('app')
  })
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { proxy: { routes: [{ prefix: '/app', upstream: app.url, auth: 'none' }] } })
  const timing = /^gateway;dur=\d+\.\d\d, upstream;dur=\d+\.\d$/
  t.match((await chat(gw, '/api/chat', 'llama3.2')).headers['server-timing'], timing, 'a whole answer')
  t.match((await chat(gw, '/api/chat', 'llama3.2', 'alice', true)).headers['server-timing'], timing, 'a stream')
  t.match((await chat(gw, '/v1/chat/completions', 'llama3.2', 'alice', true)).headers['server-timing'], timing, 'a translated stream')
  o.mode = { firstTokenDelayMs: 300 }
  const slow = (await chat(gw, '/api/chat', 'llama3.2', 'alice', true)).headers['server-timing'] as string
  const [own, upstream] = [...slow.matchAll(/dur=([\d.]+)/g)].map((m) => Number(m[1]))
  t.ok(upstream! >= 300 && own! < upstream!, `the backend's 300 ms are upstream time, not the gateway's (${slow})`)
  t.match((await chat(gw, '/api/chat', 'no-such-model')).headers['server-timing'], /^gateway;dur=\d+\.\d\d$/, 'an error')
  t.match((await send(gw.url, '/healthz')).headers['server-timing'], /^gateway;dur=/, 'a probe')
  t.match((await send(gw.url, '/app/x')).headers['server-timing'], /^gateway;dur=\d+\.\d\d, app;dur=\d+\.\d, db;dur=7$/, 'a proxied app, its own entries kept')
})

t.test('histograms: the same text as prom-client\'s Histogram given the same observations', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const options = { name: 'x_seconds', help: 'Some \\ help\nover lines', labelNames: ['model', 'backend'], buckets: [0.005, 0.01, 1, 2.5, 120] }
  const plain = new PlainHistogram({ ...options, registers: [ours] })
  const reference = new Histogram({ ...options, registers: [theirs] })
  // On the bounds, between them, above the last, zero, fractions that do not add up exactly;
  // label values prom-client must escape.
  const observations: Array<[string, string, number]> = [
    ['llama3.2', 'gpu1', 0.005], ['llama3.2', 'gpu1', 0.0051], ['llama3.2', 'gpu1', 0.1], ['llama3.2', 'gpu1', 0.2],
    ['qwen "2.5"', 'b\\1', 0], ['qwen "2.5"', 'b\\1', 120], ['qwen "2.5"', 'b\\1', 500], ['llama3.2', 'gpu1', 2.5],
    ['new\nline', '', 0.3], ['llama3.2', 'gpu1', 0.7],
  ]
  for (const [model, backend, v] of observations) {
    plain.labels(model, backend).observe(v)
    reference.labels(model, backend).observe(v)
  }
  const text = await ours.metrics()
  t.equal(text, await theirs.metrics(), 'identical exposition')
  const strip = (values: Array<{ labels: object, value: number, metricName?: string }>): unknown => values.map(({ labels, value, metricName }) => ({ labels, value, metricName }))
  const [a, b] = [await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON()]
  t.same(strip(a[0]!.values), strip(b[0]!.values), 'identical JSON (cluster aggregation reads it)')
  t.match(a[0], { name: 'x_seconds', help: options.help, type: 'histogram', aggregator: 'sum' })

  // And the text itself, for one series: cumulative buckets, +Inf equal to _count, the exact sum.
  const series = text.split('\n').filter((l) => l.includes('model="llama3.2"'))
  t.same(series, [
    'x_seconds_bucket{le="0.005",model="llama3.2",backend="gpu1"} 1',
    'x_seconds_bucket{le="0.01",model="llama3.2",backend="gpu1"} 2',
    'x_seconds_bucket{le="1",model="llama3.2",backend="gpu1"} 5',
    'x_seconds_bucket{le="2.5",model="llama3.2",backend="gpu1"} 6',
    'x_seconds_bucket{le="120",model="llama3.2",backend="gpu1"} 6',
    'x_seconds_bucket{le="+Inf",model="llama3.2",backend="gpu1"} 6',
    `x_seconds_sum{model="llama3.2",backend="gpu1"} ${0.005 + 0.0051 + 0.1 + 0.2 + 2.5 + 0.7}`,
    'x_seconds_count{model="llama3.2",backend="gpu1"} 6',
  ])
  t.match(text, /^x_seconds_bucket\{le="\+Inf",model="qwen \\"2\.5\\"",backend="b\\\\1"\} 3$/m, 'above the last bound: in +Inf only')

  // Not a number: dropped (prom-client would throw, inside a socket's close listener).
  plain.labels('llama3.2', 'gpu1').observe(NaN)
  plain.labels('llama3.2', 'gpu1').observe(Infinity)
  t.match(await ours.metrics(), /^x_seconds_count\{model="llama3.2",backend="gpu1"\} 6$/m)
  ours.resetMetrics()
  t.equal(await ours.metrics(), '# HELP x_seconds Some \\\\ help\\nover lines\n# TYPE x_seconds histogram\n', 'reset: no series')
})

/** A pool as the metrics read it: backends (replaced by a reload) and queue depths. */
function fakePool (names: string[]): Pool & { backends: unknown[] } {
  const backend = (name: string): unknown => ({ name, isUp: () => true, inFlight: 2, config: { maxConcurrent: 4 }, models: new Map(), loaded: new Set() })
  return { backends: names.map(backend), queueDepths: () => new Map() } as unknown as Pool & { backends: unknown[] }
}

t.test('the metrics\' own text: queue wait as observed, through GatewayMetrics', async (t) => {
  const metrics = new GatewayMetrics({ pool: fakePool([]) })
  for (const ms of [3, 20, 20, 7000, 500_000]) metrics.waited('llama3.2', ms)
  metrics.waited('qwen', 100)
  const text = await metrics.registry.getSingleMetricAsString('chatgate_queue_wait_seconds')
  const bounds = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '120']
  const cumulative = [1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4]
  t.equal(text, [
    '# HELP chatgate_queue_wait_seconds Time chats waited for a free backend slot (only those that waited)',
    '# TYPE chatgate_queue_wait_seconds histogram',
    ...bounds.map((le, i) => `chatgate_queue_wait_seconds_bucket{le="${le}",model="llama3.2"} ${cumulative[i]}`),
    'chatgate_queue_wait_seconds_bucket{le="+Inf",model="llama3.2"} 5',
    `chatgate_queue_wait_seconds_sum{model="llama3.2"} ${0.003 + 0.02 + 0.02 + 7 + 500}`,
    'chatgate_queue_wait_seconds_count{model="llama3.2"} 5',
    ...bounds.map((le, i) => `chatgate_queue_wait_seconds_bucket{le="${le}",model="qwen"} ${i >= 4 ? 1 : 0}`),
    'chatgate_queue_wait_seconds_bucket{le="+Inf",model="qwen"} 1',
    'chatgate_queue_wait_seconds_sum{model="qwen"} 0.1',
    'chatgate_queue_wait_seconds_count{model="qwen"} 1',
  ].join('\n'))
})

t.test('config reloads, read from the history at scrape time', async (t) => {
  const result = (ok: boolean): ReloadResult => ({ at: new Date().toISOString(), trigger: 'signal', ok, problems: ok ? [] : ['x: bad'], applied: [], restartRequired: [] })
  let history: ReloadHistory = { file: 'chatgate.yaml', succeeded: 0, failed: 0, last: undefined, loadedAt: 1_700_000_000_123 }
  const metrics = new GatewayMetrics({ pool: fakePool([]), reloads: () => history })
  const read = async (): Promise<Sample[]> => parse(await metrics.registry.metrics())

  let m = await read()
  t.equal(value(m, 'chatgate_config_reloads_total', { result: 'success' }), 0, 'both results present from the start')
  t.equal(value(m, 'chatgate_config_reloads_total', { result: 'failure' }), 0)
  t.equal(value(m, 'chatgate_config_last_reload_successful'), 1, 'no reload yet: 1')
  t.equal(value(m, 'chatgate_config_loaded_timestamp_seconds'), 1_700_000_000.123)
  const text = await metrics.registry.metrics()
  t.match(text, '# TYPE chatgate_config_reloads_total counter')
  t.match(text, '# TYPE chatgate_config_last_reload_successful gauge')
  t.match(text, '# TYPE chatgate_config_loaded_timestamp_seconds gauge')

  history = { ...history, failed: 1, last: result(false) }
  m = await read()
  t.equal(value(m, 'chatgate_config_reloads_total', { result: 'failure' }), 1)
  t.equal(value(m, 'chatgate_config_last_reload_successful'), 0, 'the last reload failed')
  t.equal(value(m, 'chatgate_config_loaded_timestamp_seconds'), 1_700_000_000.123, 'the running config stays')

  history = { ...history, succeeded: 2, last: result(true), loadedAt: 1_700_000_100_000 }
  m = await read()
  t.equal(value(m, 'chatgate_config_reloads_total', { result: 'success' }), 2)
  t.equal(value(m, 'chatgate_config_reloads_total', { result: 'failure' }), 1)
  t.equal(value(m, 'chatgate_config_last_reload_successful'), 1)
  t.equal(value(m, 'chatgate_config_loaded_timestamp_seconds'), 1_700_000_100)

  const without = parse(await new GatewayMetrics({ pool: fakePool([]) }).registry.metrics())
  t.equal(value(without, 'chatgate_config_last_reload_successful'), undefined, 'no history given: no reload series')
})

t.test('a backend a reload removed disappears from the backend gauges', async (t) => {
  const pool = fakePool(['a', 'b'])
  const metrics = new GatewayMetrics({ pool })
  let m = parse(await metrics.registry.metrics())
  for (const name of ['chatgate_backend_up', 'chatgate_backend_slots_in_use', 'chatgate_backend_slots']) {
    t.equal(m.filter((s) => s.name === name).length, 2, `${name}: both`)
  }
  t.equal(value(m, 'chatgate_backend_slots', { backend: 'b' }), 4)
  pool.backends = pool.backends.filter((b) => (b as { name: string }).name === 'a')
  m = parse(await metrics.registry.metrics())
  for (const name of ['chatgate_backend_up', 'chatgate_backend_slots_in_use', 'chatgate_backend_slots']) {
    t.same(m.filter((s) => s.name === name).map((s) => s.labels.backend), ['a'], `${name}: only the remaining one`)
  }
})
