import autocannon from 'autocannon'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// `npm run bench`: an emulated Ollama backend, ChatGate in front of it (JWT auth and rate
// limiting on), and Nginx (proxy_buffering off, upstream keepalive) when installed, all measured
// in one run with the same load, reported as ratios. Two more ChatGates price API-key auth with
// token quotas and concurrent-stream limits (on, never reached): one keeping its counters in the
// process (local), one in a Redis it shares over a unix socket (when redis-server is installed).

const DURATION = Number(process.env.BENCH_DURATION ?? 5)
// The machine's speed drifts (shared host): targets take turns, round after round, and each
// round's ratio compares figures taken seconds apart.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32)
const SECRET = 'bench-secret-bench-secret-bench-secret!!'
const MODEL = 'llama3.2:latest'
const children: ChildProcess[] = []
// Limits that are on but never reached: every request goes through the checks, none is refused.
const QUOTA_LIMITS = 'limits: { requestsPerMinute: { user: 100000000, admin: 100000000 }, tokensPerDay: { user: 1000000000000 }, tokensPerMonth: { user: 1000000000000 }, concurrentStreams: { user: 100000 } }'
// The ChatGates measured against the plain one (`chatgate`), with how they are printed.
const VARIANTS: Record<string, string> = {
  'chatgate-quota-local': 'chatgate+keys+quotas (local)',
  'chatgate-quota-redis': 'chatgate+keys+quotas (redis)',
}

// Two cores: the load generator and the backend share core 0, the proxy under test (Nginx with
// one worker, or ChatGate's one process) has core 1 to itself, so neither proxy competes with the
// load it is measured under. Without taskset everything shares both cores.
const HAVE_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0
const pinned = (core: number, command: string, args: string[]): [string, string[]] =>
  HAVE_TASKSET ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]
const work = mkdtempSync(join(tmpdir(), 'chatgate-bench-'))

/**
 * Starts a process pinned to `core` with its output in `logFile` (as Nginx writes its access log
 * to a file), and resolves with the first output line matching `ready`.
 */
async function start (core: number, command: string, args: string[], ready: RegExp, logFile: string): Promise<RegExpExecArray> {
  const out = openSync(logFile, 'a')
  const child = spawn(...pinned(core, command, args), { stdio: ['ignore', out, out] })
  children.push(child)
  let exited: number | null | undefined
  child.once('exit', (code) => { exited = code })
  for (let i = 0; i < 200; i++) {
    const match = ready.exec(readFileSync(logFile, 'utf8'))
    if (match !== null) return match
    if (exited !== undefined) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${command} did not start (see ${logFile})`)
}

function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Writes the config of the ChatGate `name` (its own store dir) and returns its path. */
function gatewayConfig (name: string, backendPort: string, limits: string, redis?: string): string {
  const config = join(work, `${name}.yaml`)
  writeFileSync(config, `server: { host: 127.0.0.1, port: 0 }
auth: { jwt: { secret: "${SECRET}" } }
${limits}
store: { dir: ${join(work, `${name}-data`)}${redis === undefined ? '' : `, redis: { url: "${redis}" }`} }
log: { level: info }
backends:
  - { name: bench, type: ollama, url: "http://127.0.0.1:${backendPort}", maxConcurrent: 256 }
`)
  return config
}

/** Starts the ChatGate `name` on core 1, as the proxy under test; resolves with its URL. */
async function startGateway (name: string, config: string): Promise<string> {
  const [, url] = await start(1, process.execPath, ['dist/cli.js', 'serve', '--config', config], /Server listening at (http:\/\/[^"]+)/, join(work, `${name}.log`))
  return url!
}

/** Runs the CLI against `config` (before the gateway starts); its standard output. */
function cli (config: string, args: string[], input?: string): string {
  const run = spawnSync(process.execPath, ['dist/cli.js', ...args, '--config', config], { input })
  if (run.status !== 0) throw new Error(`chatgate ${args.join(' ')}: ${run.stderr.toString()}${run.stdout.toString()}`)
  return run.stdout.toString()
}

/**
 * A ChatGate whose caller authenticates with an API key that has limits of its own, on top of
 * the owner's role limits: all of them on, none reached. The store user and the key are created
 * with the CLI before the gateway starts.
 */
async function startQuotaGateway (name: string, backendPort: string, redis?: string): Promise<{ url: string, key: string }> {
  const config = gatewayConfig(name, backendPort, QUOTA_LIMITS, redis)
  cli(config, ['users', 'add', 'bench'], 'bench-password')
  const created = cli(config, ['keys', 'create', '--owner', 'bench', '--name', 'bench', '--rpm', '100000000', '--tokens-per-day', '1000000000000', '--tokens-per-month', '1000000000000', '--json'])
  return { url: await startGateway(name, config), key: (JSON.parse(created) as { key: string }).key }
}

/**
 * redis-server on core 0 with the load generator and the backend (in production Redis runs on
 * another machine: it must not take the proxy's core), listening on a unix socket only, no
 * persistence. Resolves with the socket's URL, or undefined when redis-server is not installed.
 */
async function startRedis (): Promise<string | undefined> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) return undefined
  const socket = join(work, 'redis.sock')
  await start(0, 'redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no'], /ready to accept connections/i, join(work, 'redis.log'))
  return `unix://${socket}`
}

async function startNginx (backendPort: number): Promise<number | undefined> {
  if (spawnSync('nginx', ['-v']).error !== undefined) return undefined
  const port = await freePort()
  const prefix = join(work, 'nginx')
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  writeFileSync(join(prefix, 'nginx.conf'), `
worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${prefix}/logs/access.log;
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fcgi; uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`)
  const child = spawn(...pinned(1, 'nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf')]), { stdio: 'ignore' })
  children.push(child)
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/api/version`)
      return port
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  throw new Error('nginx did not start')
}

interface Scenario { name: string, gatewayPath: string, upstreamPath: string, body: object, ends: string }
const messages = [{ role: 'user', content: 'Tell me about benchmarks.' }]
const SCENARIOS: Scenario[] = [
  { name: '(a) streamed pass-through (Ollama NDJSON)', gatewayPath: '/api/chat', upstreamPath: '/api/chat', body: { model: MODEL, messages, stream: true }, ends: '"done":true' },
  { name: '(b) streamed Ollama→OpenAI translation', gatewayPath: '/v1/chat/completions', upstreamPath: '/v1/chat/completions', body: { model: MODEL, messages, stream: true }, ends: 'data: [DONE]' },
  { name: '(c) non-streamed chat', gatewayPath: '/api/chat', upstreamPath: '/api/chat', body: { model: MODEL, messages, stream: false }, ends: '"done":true' },
]

interface Result {
  target: string, rps: number, p50: number, p99: number, errors: number
  /** How busy each core was (%) while the target was measured: core 0 (load generator, backend, Redis), core 1 (the proxy). */
  busy?: [number, number]
}

/** Busy and total jiffies of cores 0 and 1 (/proc/stat), or undefined off Linux. */
function coreTimes (): Array<[number, number]> | undefined {
  try {
    const lines = readFileSync('/proc/stat', 'utf8').split('\n')
    return [0, 1].map((core) => {
      const fields = lines.find((l) => l.startsWith(`cpu${core} `))!.trim().split(/\s+/).slice(1, 9).map(Number)
      const total = fields.reduce((a, b) => a + b, 0)
      return [total - fields[3]! - fields[4]!, total]
    })
  } catch {
    return undefined
  }
}

// wrk (C, Debian package) takes far less CPU than a Node load generator, which matters on two
// cores shared by the load generator, the backend and the proxy; autocannon is the fallback.
const HAVE_WRK = spawnSync('wrk', ['--version']).error === undefined

function wrkMs (text: string, percentile: string): number {
  const match = new RegExp(`^\\s*${percentile}%\\s+([0-9.]+)(us|ms|s)`, 'm').exec(text)
  if (match === null) return NaN
  const value = Number(match[1])
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value
}

function runWrk (url: string, body: object, headers: Record<string, string>, seconds: number): Promise<Omit<Result, 'target'>> {
  const script = join(work, 'post.lua')
  const lines = Object.entries({ 'content-type': 'application/json', ...headers }).map(([k, v]) => `wrk.headers["${k}"] = "${v}"`)
  writeFileSync(script, `wrk.method = "POST"\nwrk.body = '${JSON.stringify(body)}'\n${lines.join('\n')}\n`)
  return new Promise((resolve, reject) => {
    const child = spawn(...pinned(0, 'wrk', ['-t', '1', '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--latency', '-s', script, url]))
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.on('error', reject)
    child.on('close', () => {
      const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0'
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
      resolve({
        rps: Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1] ?? NaN),
        p50: wrkMs(out, '50'),
        p99: wrkMs(out, '99'),
        errors: Number(errors) + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((n, v) => n + Number(v), 0)),
      })
    })
  })
}

async function runAutocannon (url: string, body: object, headers: Record<string, string>, seconds: number): Promise<Omit<Result, 'target'>> {
  const r = await autocannon({ url, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), connections: CONNECTIONS, duration: seconds })
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx + r.timeouts }
}

async function check (target: string, url: string, body: object, headers: Record<string, string>, ends: string): Promise<void> {
  const check = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const text = await check.text()
  if (check.status !== 200 || !text.includes(ends)) throw new Error(`${target} ${url}: ${check.status} ${text.slice(0, 200)}`)
  await (HAVE_WRK ? runWrk : runAutocannon)(url, body, headers, 2) // warm-up, not counted
}

async function measure (target: string, url: string, body: object, headers: Record<string, string>): Promise<Result> {
  const before = coreTimes()
  const result = await (HAVE_WRK ? runWrk : runAutocannon)(url, body, headers, DURATION)
  const after = coreTimes()
  const busy = before === undefined || after === undefined ? undefined
    : [0, 1].map((c) => Math.round(100 * (after[c]![0] - before[c]![0]) / Math.max(1, after[c]![1] - before[c]![1]))) as [number, number]
  return { target, ...result, busy }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Each target's median figures over the rounds. */
function summarize (rounds: Result[][]): Result[] {
  return rounds[0]!.map((first, i) => {
    const all = rounds.map((round) => round[i]!)
    const busy = all.every((r) => r.busy !== undefined) ? [0, 1].map((c) => median(all.map((r) => r.busy![c]!))) as [number, number] : undefined
    return { target: first.target, rps: median(all.map((r) => r.rps)), p50: median(all.map((r) => r.p50)), p99: median(all.map((r) => r.p99)), errors: all.reduce((n, r) => n + r.errors, 0), busy }
  })
}

interface Ratios { ratioToNginx?: number, roundRatiosToNginx?: number[], ratioToDirect: number }
interface ScenarioReport extends Ratios {
  results: Result[]
  /** Per quota ChatGate: the median of its per-round ratio to the plain ChatGate, and its own ratios to Nginx and direct. */
  variants: Record<string, Ratios & { ratioToPlain: number, roundRatiosToPlain: number[] }>
}

async function main (): Promise<void> {
  // The runner itself sits with the load generator, off the proxy's core.
  if (HAVE_TASKSET) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)])
  const [, backendPort] = await start(0, process.execPath, ['dist-bench/bench/backend.js'], /^listening (\d+)/m, join(work, 'backend.log'))
  const config = gatewayConfig('chatgate', backendPort!, 'limits: { requestsPerMinute: { user: 100000000, admin: 100000000 } }')
  const gatewayUrl = await startGateway('chatgate', config)
  const token = cli(config, ['token', '--sub', 'bench', '--role', 'user']).trim()
  const quotaLocal = await startQuotaGateway('chatgate-quota-local', backendPort!)
  const redisUrl = await startRedis()
  const quotaRedis = redisUrl === undefined ? undefined : await startQuotaGateway('chatgate-quota-redis', backendPort!, redisUrl)
  const nginxPort = await startNginx(Number(backendPort))
  if (nginxPort === undefined) process.stdout.write('nginx is not installed: measuring direct and ChatGate only\n')
  if (redisUrl === undefined) process.stdout.write('redis-server is not installed: skipping chatgate-quota-redis\n')
  process.stdout.write(`${HAVE_TASKSET ? 'load generator and backend on core 0, proxy on core 1' : 'no taskset: all processes share the cores'}${redisUrl === undefined ? '' : HAVE_TASKSET ? '; redis-server on core 0 (with the load generator), unix socket' : '; redis-server on a unix socket'}\n`)
  process.stdout.write(`load: ${HAVE_WRK ? 'wrk' : 'autocannon'}, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION}s per target; chunks per answer: ${process.env.BENCH_CHUNKS ?? 20}\n`)
  process.stdout.write('chatgate: JWT auth and rate limiting; chatgate-quota-*: API key (with its own limits), rate limiting, token quotas per day and month, concurrent-stream limit, all on and never reached; counters in the process (local) or in Redis (redis)\n\n')

  const report: Record<string, ScenarioReport> = {}
  for (const s of SCENARIOS) {
    const targets: Array<[string, string, Record<string, string>]> = [[`direct`, `http://127.0.0.1:${backendPort}${s.upstreamPath}`, {}]]
    if (nginxPort !== undefined) targets.push(['nginx', `http://127.0.0.1:${nginxPort}${s.upstreamPath}`, {}])
    targets.push(['chatgate', `${gatewayUrl}${s.gatewayPath}`, { authorization: `Bearer ${token}` }])
    targets.push(['chatgate-quota-local', `${quotaLocal.url}${s.gatewayPath}`, { authorization: `Bearer ${quotaLocal.key}` }])
    if (quotaRedis !== undefined) targets.push(['chatgate-quota-redis', `${quotaRedis.url}${s.gatewayPath}`, { authorization: `Bearer ${quotaRedis.key}` }])
    for (const [target, url, headers] of targets) await check(target, url, s.body, headers, s.ends)
    const rounds: Result[][] = []
    for (let round = 0; round < ROUNDS; round++) {
      const results: Result[] = []
      for (const [target, url, headers] of targets) results.push(await measure(target, url, s.body, headers))
      rounds.push(results)
    }
    const results = summarize(rounds)
    const rps = (round: Result[], target: string): number => round.find((r) => r.target === target)!.rps
    /** Per round, target's throughput over the other's (same round), and their median. */
    const ratio = (target: string, to: string): [number, number[]] => {
      const perRound = rounds.map((round) => rps(round, target) / rps(round, to))
      return [median(perRound), perRound]
    }
    const ratios = (target: string): Ratios => {
      const [ratioToNginx, roundRatiosToNginx] = nginxPort === undefined ? [] : ratio(target, 'nginx')
      return { ratioToNginx, roundRatiosToNginx, ratioToDirect: ratio(target, 'direct')[0] }
    }
    const variants: ScenarioReport['variants'] = {}
    for (const [target] of targets.filter(([t]) => t in VARIANTS)) {
      const [ratioToPlain, roundRatiosToPlain] = ratio(target, 'chatgate')
      variants[target] = { ratioToPlain, roundRatiosToPlain, ...ratios(target) }
    }
    const plain = ratios('chatgate')
    report[s.name] = { results, ...plain, variants }
    const list = (values: number[]): string => values.map((r) => r.toFixed(2)).join(', ')
    process.stdout.write(`${s.name}\n`)
    for (const r of results) {
      process.stdout.write(`  ${r.target.padEnd(20)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${String(r.p50).padStart(5)} ms  p99 ${String(r.p99).padStart(5)} ms  errors ${r.errors}${r.busy === undefined ? '' : `  cores busy ${r.busy[0]}% / ${r.busy[1]}%`}\n`)
    }
    if (plain.ratioToNginx !== undefined) process.stdout.write(`  ratio ChatGate/Nginx: ${plain.ratioToNginx.toFixed(2)} (throughput; median of rounds ${list(plain.roundRatiosToNginx!)})\n`)
    process.stdout.write(`  ratio ChatGate/direct: ${plain.ratioToDirect.toFixed(2)}\n`)
    for (const [target, v] of Object.entries(variants)) {
      process.stdout.write(`  ${VARIANTS[target]} / chatgate: ${v.ratioToPlain.toFixed(2)} (median of rounds ${list(v.roundRatiosToPlain)}); /Nginx ${v.ratioToNginx?.toFixed(2) ?? '-'}, /direct ${v.ratioToDirect.toFixed(2)}\n`)
    }
    process.stdout.write('\n')
  }
  const summary = Object.keys(VARIANTS).filter((t) => Object.values(report).some((r) => t in r.variants))
  if (summary.length > 0) {
    process.stdout.write('API-key auth and quotas on, throughput relative to plain ChatGate (target >= 0.9):\n')
    for (const t of summary) {
      process.stdout.write(`  ${VARIANTS[t]!.padEnd(30)} ${Object.values(report).map((r) => r.variants[t]!.ratioToPlain.toFixed(2)).join('  ')}   (scenarios ${Object.keys(report).map((n) => n.slice(0, 3)).join(' ')})\n`)
    }
  }
  mkdirSync('bench/results', { recursive: true })
  writeFileSync('bench/results/latest.json', JSON.stringify({ date: new Date().toISOString(), pinned: HAVE_TASKSET, loadGenerator: HAVE_WRK ? 'wrk' : 'autocannon', connections: CONNECTIONS, duration: DURATION, rounds: ROUNDS, redis: redisUrl === undefined ? undefined : { core: HAVE_TASKSET ? 0 : undefined, socket: redisUrl }, report }, null, 2))
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`)
  process.exitCode = 1
}).finally(() => {
  for (const child of children) child.kill('SIGTERM')
})
