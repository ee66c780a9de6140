import autocannon from 'autocannon'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// `npm run bench`: an emulated Ollama backend, ChatGate in front of it (JWT auth and rate
// limiting on), and Nginx (proxy_buffering off, upstream keepalive) when installed, all measured
// in one run with the same load, reported as ratios.

const DURATION = Number(process.env.BENCH_DURATION ?? 5)
// The machine's speed drifts (shared host): targets take turns, round after round, and each
// round's ratio compares figures taken seconds apart.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32)
const SECRET = 'bench-secret-bench-secret-bench-secret!!'
const MODEL = 'llama3.2:latest'
const children: ChildProcess[] = []

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

interface Result { target: string, rps: number, p50: number, p99: number, errors: number }

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
  return { target, ...await (HAVE_WRK ? runWrk : runAutocannon)(url, body, headers, DURATION) }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Each target's median figures over the rounds. */
function summarize (rounds: Result[][]): Result[] {
  return rounds[0]!.map((first, i) => {
    const all = rounds.map((round) => round[i]!)
    return { target: first.target, rps: median(all.map((r) => r.rps)), p50: median(all.map((r) => r.p50)), p99: median(all.map((r) => r.p99)), errors: all.reduce((n, r) => n + r.errors, 0) }
  })
}

async function main (): Promise<void> {
  // The runner itself sits with the load generator, off the proxy's core.
  if (HAVE_TASKSET) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)])
  const [, backendPort] = await start(0, process.execPath, ['dist-bench/bench/backend.js'], /^listening (\d+)/m, join(work, 'backend.log'))
  const config = join(work, 'chatgate.yaml')
  writeFileSync(config, `server: { host: 127.0.0.1, port: 0 }
auth: { jwt: { secret: "${SECRET}" } }
limits: { requestsPerMinute: { user: 100000000, admin: 100000000 } }
store: { dir: ${join(work, 'data')} }
log: { level: info }
backends:
  - { name: bench, type: ollama, url: "http://127.0.0.1:${backendPort}", maxConcurrent: 256 }
`)
  const [, gatewayUrl] = await start(1, process.execPath, ['dist/cli.js', 'serve', '--config', config], /Server listening at (http:\/\/[^"]+)/, join(work, 'gateway.log'))
  const token = spawnSync(process.execPath, ['dist/cli.js', 'token', '--sub', 'bench', '--role', 'user', '--config', config]).stdout.toString().trim()
  const nginxPort = await startNginx(Number(backendPort))
  if (nginxPort === undefined) process.stdout.write('nginx is not installed: measuring direct and ChatGate only\n')
  process.stdout.write(`${HAVE_TASKSET ? 'load generator and backend on core 0, proxy on core 1' : 'no taskset: all processes share the cores'}\n`)
  process.stdout.write(`load: ${HAVE_WRK ? 'wrk' : 'autocannon'}, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION}s per target; chunks per answer: ${process.env.BENCH_CHUNKS ?? 20}; ChatGate with JWT auth and rate limiting\n\n`)

  const report: Record<string, { results: Result[], ratioToNginx?: number, roundRatiosToNginx?: number[], ratioToDirect: number }> = {}
  for (const s of SCENARIOS) {
    const targets: Array<[string, string, Record<string, string>]> = [[`direct`, `http://127.0.0.1:${backendPort}${s.upstreamPath}`, {}]]
    if (nginxPort !== undefined) targets.push(['nginx', `http://127.0.0.1:${nginxPort}${s.upstreamPath}`, {}])
    targets.push(['chatgate', `${gatewayUrl}${s.gatewayPath}`, { authorization: `Bearer ${token}` }])
    for (const [target, url, headers] of targets) await check(target, url, s.body, headers, s.ends)
    const rounds: Result[][] = []
    for (let round = 0; round < ROUNDS; round++) {
      const results: Result[] = []
      for (const [target, url, headers] of targets) results.push(await measure(target, url, s.body, headers))
      rounds.push(results)
    }
    const results = summarize(rounds)
    const rps = (round: Result[], target: string): number => round.find((r) => r.target === target)!.rps
    const roundRatios = nginxPort === undefined ? undefined : rounds.map((round) => rps(round, 'chatgate') / rps(round, 'nginx'))
    report[s.name] = { results, ratioToNginx: roundRatios && median(roundRatios), roundRatiosToNginx: roundRatios, ratioToDirect: median(rounds.map((round) => rps(round, 'chatgate') / rps(round, 'direct'))) }
    process.stdout.write(`${s.name}\n`)
    for (const r of results) {
      process.stdout.write(`  ${r.target.padEnd(9)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${String(r.p50).padStart(4)} ms  p99 ${String(r.p99).padStart(4)} ms  errors ${r.errors}\n`)
    }
    if (roundRatios !== undefined) process.stdout.write(`  ratio ChatGate/Nginx: ${report[s.name]!.ratioToNginx!.toFixed(2)} (throughput; median of rounds ${roundRatios.map((r) => r.toFixed(2)).join(', ')})\n`)
    process.stdout.write(`  ratio ChatGate/direct: ${report[s.name]!.ratioToDirect.toFixed(2)}\n\n`)
  }
  mkdirSync('bench/results', { recursive: true })
  writeFileSync('bench/results/latest.json', JSON.stringify({ date: new Date().toISOString(), pinned: HAVE_TASKSET, loadGenerator: HAVE_WRK ? 'wrk' : 'autocannon', connections: CONNECTIONS, duration: DURATION, rounds: ROUNDS, report }, null, 2))
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`)
  process.exitCode = 1
}).finally(() => {
  for (const child of children) child.kill('SIGTERM')
})
