// The container image, really built and run with podman: health check, a token from the CLI
// inside the container, chats on both surfaces against an emulated Ollama on the host, non-root,
// 80/443 bindable without root, and a clean exit on `podman stop` (SIGTERM).
// scripts/container-host.sh prepares the host first (packages, engine settings, base image).
import t from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { OllamaEmulator } from './emulators/ollama.js'

// A cold run builds the base image (mmdebstrap) and runs a full `npm ci` in the build; a warm run
// takes seconds. The root t.setTimeout also raises the runner's per-file timeout.
t.setTimeout(20 * 60_000)

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const IMAGE = 'localhost/chatgate:test'
const NAME = `chatgate-test-${process.pid}`
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt'

interface Result { code: number, stdout: string, stderr: string }

function run (cmd: string, args: string[], timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}
const podman = (args: string[], timeoutMs?: number): Promise<Result> => run('podman', args, timeoutMs)
const tail = (r: Result): string => `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-30).join('\n')
const ok = (r: Result, what: string): string => r.code === 0 ? what : `${what}:\n${tail(r)}`
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a value or the deadline passes (then undefined). */
async function poll<T> (check: () => Promise<T | undefined>, deadlineMs: number): Promise<T | undefined> {
  const end = Date.now() + deadlineMs
  for (;;) {
    const value = await check()
    if (value !== undefined || Date.now() > end) return value
    await pause(200)
  }
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    }).on('error', reject)
  })
}

t.before(async () => {
  const host = await run('sh', ['scripts/container-host.sh'], 15 * 60_000)
  if (host.code !== 0) throw new Error(`scripts/container-host.sh failed:\n${tail(host)}`)
  // The build's `npm ci` must trust the CA this host trusts; it is mounted, never copied in.
  const ca = existsSync(HOST_CA) ? ['-v', '/etc/ssl/certs:/etc/ssl/certs:ro', '--build-arg', `NODE_EXTRA_CA_CERTS=${HOST_CA}`] : []
  const build = await podman(['build', '--pull=never', '--format', 'docker', ...ca, '-t', IMAGE, '.'], 15 * 60_000)
  if (build.code !== 0) throw new Error(`podman build failed:\n${tail(build)}`)
})

t.test('the image: non-root, health check, stop signal, exposed ports', async (t) => {
  const inspect = await podman(['image', 'inspect', IMAGE])
  t.equal(inspect.code, 0)
  interface Check { Test: string[] }
  const [image] = JSON.parse(inspect.stdout) as Array<{ Healthcheck?: Check, Config: { User: string, StopSignal: string, ExposedPorts: Record<string, unknown>, Healthcheck?: Check } }>
  const config = image!.Config
  t.equal(config.User, 'node')
  t.equal(config.StopSignal, 'SIGTERM')
  t.same(Object.keys(config.ExposedPorts).sort(), ['443/tcp', '80/tcp', '8080/tcp'])
  // podman 4 shows it beside Config, docker inside it.
  const check = config.Healthcheck ?? image!.Healthcheck
  t.same(check?.Test, ['CMD', 'node', '/app/healthcheck.cjs'], 'HEALTHCHECK kept (--format docker)')
})

t.test('80 and 443 bind as uid 1000 with every capability dropped but NET_BIND_SERVICE', async (t) => {
  // As in docker/k8s: drop ALL, add NET_BIND_SERVICE, no privilege escalation; the sysctl pins the
  // kernel default so only the capability can be what allows it.
  const script = "const net = require('net'); let n = 0; for (const p of [80, 443]) net.createServer().listen(p, () => { if (++n === 2) { console.log('bound 80 443 as ' + process.getuid()); process.exit(0) } }).on('error', (e) => { console.log(e.code); process.exit(3) })"
  const r = await podman(['run', '--rm', '--network', 'none', '--cap-drop', 'ALL', '--cap-add', 'NET_BIND_SERVICE',
    '--security-opt', 'no-new-privileges', '--sysctl', 'net.ipv4.ip_unprivileged_port_start=1024', '--entrypoint', 'node', IMAGE, '-e', script])
  t.equal(r.code, 0, ok(r, 'node ran'))
  t.equal(r.stdout.trim(), 'bound 80 443 as 1000')
})

t.test('the probe script answers over HTTPS (as in docker/compose.yaml and docker/k8s)', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  const [port, httpPort] = [await freePort(), await freePort()]
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-container-tls-'))
  chmodSync(dir, 0o755)
  writeFileSync(join(dir, 'chatgate.yaml'), `server: { host: 127.0.0.1, port: ${port} }
tls: { mode: self-signed, names: [localhost], httpPort: ${httpPort} }
backends: [{ name: ollama, type: ollama, url: "${ollama.url}" }]
store: { dir: /var/lib/chatgate }
`, { mode: 0o644 })
  const name = `${NAME}-tls`
  t.teardown(async () => { await podman(['rm', '-f', '-v', name]) })
  const started = await podman(['run', '-d', '--name', name, '--network', 'host', '-v', `${dir}:/etc/chatgate:ro`,
    '-e', `CHATGATE_HEALTH_URL=https://127.0.0.1:${port}/healthz`, IMAGE])
  t.equal(started.code, 0, ok(started, 'podman run'))
  const healthy = await poll(async () => (await podman(['healthcheck', 'run', name])).code === 0 ? true : undefined, 60_000)
  t.equal(healthy, true, 'HEALTHCHECK over HTTPS')
  const ready = await poll(async () => (await podman(['exec', name, 'node', '/app/healthcheck.cjs', `https://127.0.0.1:${port}/readyz`])).code === 0 ? true : undefined, 30_000)
  t.equal(ready, true, 'the readiness probe command of docker/k8s: /readyz over HTTPS')
})

t.test('the container serves chats, runs as non-root and stops cleanly on SIGTERM', async (t) => {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => ollama.close())
  // The shipped container config, listening on loopback at a port of the test's (host network:
  // the container reaches the emulator on 127.0.0.1).
  const port = await freePort()
  const shipped = readFileSync(join(ROOT, 'docker/chatgate.yaml'), 'utf8')
  const config = shipped.replace(/^ {2}host: 0\.0\.0\.0$/m, '  host: 127.0.0.1').replace(/^ {2}port: 8080$/m, `  port: ${port}`)
  t.not(config, shipped)
  t.match(config, `port: ${port}`)
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-container-'))
  chmodSync(dir, 0o755) // the container's user (uid 1000) reads it
  writeFileSync(join(dir, 'chatgate.yaml'), config, { mode: 0o644 })

  const base = `http://127.0.0.1:${port}`
  t.teardown(async () => { await podman(['rm', '-f', '-v', NAME]) })
  // Hardened as in docker/k8s: read-only root, capabilities dropped, no privilege escalation.
  const started = await podman(['run', '-d', '--name', NAME, '--network', 'host', '--read-only',
    '--cap-drop', 'ALL', '--cap-add', 'NET_BIND_SERVICE', '--security-opt', 'no-new-privileges',
    '-v', `${dir}:/etc/chatgate:ro`, '-e', `OLLAMA_URL=${ollama.url}`, '-e', `CHATGATE_HEALTH_URL=${base}/healthz`, IMAGE])
  t.equal(started.code, 0, ok(started, 'podman run'))

  // The image's own HEALTHCHECK, run on demand (no systemd timers here), until it passes.
  const healthy = await poll(async () => {
    const state = await podman(['inspect', NAME, '--format', '{{.State.Status}}'])
    if (state.stdout.trim() !== 'running') return `container ${state.stdout.trim()}`
    return (await podman(['healthcheck', 'run', NAME])).code === 0 ? 'healthy' : undefined
  }, 60_000)
  if (healthy !== 'healthy') {
    const logs = await podman(['logs', NAME])
    t.fail(`not healthy (${healthy ?? 'deadline passed'}):\n${tail(logs)}`)
    return
  }
  t.equal((await podman(['inspect', NAME, '--format', '{{.State.Health.Status}}'])).stdout.trim(), 'healthy')
  t.same(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' })
  // Ready once the emulated Ollama answered a discovery.
  const ready = await poll(async () => (await fetch(`${base}/readyz`)).status === 200 ? true : undefined, 30_000)
  t.equal(ready, true, '/readyz: 200')

  const token = await podman(['exec', NAME, 'node', 'dist/cli.js', 'token', '--sub', 'alice', '--role', 'user', '--config', '/etc/chatgate/chatgate.yaml'])
  t.equal(token.code, 0, ok(token, 'chatgate token inside the container'))
  const jwt = token.stdout.trim()
  t.match(jwt, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/)

  const messages = [{ role: 'user', content: 'Why is the sky blue?' }]
  const post = (url: string, auth?: string, model = 'llama3.2'): Promise<Response> => fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth !== undefined && { authorization: `Bearer ${auth}` }) },
    body: JSON.stringify({ model, stream: false, messages }),
  })
  // The answer the emulator gives directly is what must come through the container.
  const direct = (await (await post(`${ollama.url}/api/chat`, undefined, 'llama3.2:latest')).json()) as { message: { content: string } }
  t.ok(direct.message.content.length > 0)

  t.equal((await post(`${base}/api/chat`)).status, 401, 'no token: refused')
  const ollamaRes = await post(`${base}/api/chat`, jwt)
  t.equal(ollamaRes.status, 200)
  t.equal(((await ollamaRes.json()) as { message: { content: string } }).message.content, direct.message.content, '/api/chat')
  const openaiRes = await post(`${base}/v1/chat/completions`, jwt)
  t.equal(openaiRes.status, 200)
  const completion = (await openaiRes.json()) as { choices: Array<{ message: { content: string } }> }
  t.equal(completion.choices[0]?.message.content, direct.message.content, '/v1/chat/completions')

  t.equal((await podman(['exec', NAME, 'id', '-u'])).stdout.trim(), '1000', 'exec runs as uid 1000')
  const status = await podman(['exec', NAME, 'cat', '/proc/1/status'])
  t.match(status.stdout, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m, 'the server process (pid 1) is uid 1000')
  const written = await podman(['exec', NAME, 'sh', '-c', 'test -s /var/lib/chatgate/jwt-secret && ! touch /app/x 2>/dev/null && echo ok'])
  t.equal(written.stdout.trim(), 'ok', 'state goes to the data volume; the root filesystem is read-only')

  const stop = await podman(['stop', '-t', '45', NAME]) // beyond server.shutdownGraceMs (30 s)
  t.equal(stop.code, 0, ok(stop, 'podman stop'))
  const exited = await podman(['inspect', NAME, '--format', '{{.State.Status}} {{.State.ExitCode}}'])
  t.equal(exited.stdout.trim(), 'exited 0', 'SIGTERM: a clean exit 0')
  const logs = await podman(['logs', NAME])
  t.match(`${logs.stdout}${logs.stderr}`, /"signal":"SIGTERM".*"msg":"shutting down/)
})
