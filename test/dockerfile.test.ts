// The Dockerfile, linted offline with dockerfile-utils, and the properties the image must have:
// multi-stage, non-root, health check, SIGTERM, ports, lockfile installs, layer caching.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { ValidationSeverity, validate, type ValidatorSettings } from 'dockerfile-utils'
import { validateConfig } from '../src/config/load.js'

const file = (path: string): string => readFileSync(fileURLToPath(new URL(`../${path}`, import.meta.url)), 'utf8')
const dockerfile = file('Dockerfile')

// Every optional rule on, as warnings: "no problems" means none of any severity.
const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.WARNING,
  directiveCasing: ValidationSeverity.WARNING,
  emptyContinuationLine: ValidationSeverity.WARNING,
  instructionCasing: ValidationSeverity.WARNING,
  instructionCmdMultiple: ValidationSeverity.WARNING,
  instructionEntrypointMultiple: ValidationSeverity.WARNING,
  instructionHealthcheckMultiple: ValidationSeverity.WARNING,
  instructionJSONInSingleQuotes: ValidationSeverity.WARNING,
  instructionWorkdirRelative: ValidationSeverity.WARNING,
}

interface Instruction { keyword: string, args: string }
/** Instructions in order: continuation lines joined, comments dropped. */
function instructions (text: string): Instruction[] {
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l))
  return lines.join('\n').replace(/\\\n/g, ' ').split('\n')
    .map((l) => l.trim()).filter((l) => l !== '')
    .map((l) => { const [keyword = '', ...rest] = l.split(/\s+/); return { keyword: keyword.toUpperCase(), args: rest.join(' ') } })
}
const all = instructions(dockerfile)
const froms = all.map((ins, i) => ({ ins, i })).filter(({ ins }) => ins.keyword === 'FROM')
const finalStage = all.slice(froms.at(-1)!.i)
const args = (list: Instruction[], keyword: string): string[] => list.filter((i) => i.keyword === keyword).map((i) => i.args)

t.test('dockerfile-utils finds no problem', async (t) => {
  t.same(validate(dockerfile, STRICT).map((d) => `${d.range.start.line + 1}: ${d.message}`), [])
  // The linter does catch real mistakes: a broken copy is rejected.
  const broken = dockerfile.replace('--interval=30s', '--interval=30x').replace('EXPOSE 80 443 8080', 'EXPOSE 80/xtp 443')
  const problems = validate(broken, STRICT)
  t.ok(problems.length >= 2, `a broken copy has problems: ${problems.map((d) => d.message).join('; ')}`)
})

t.test('multi-stage on a node:20-slim base, production dependencies only at run time', async (t) => {
  t.ok(froms.length >= 3, 'several stages')
  t.ok(args(all, 'ARG').includes('NODE_IMAGE=node:20-slim'), 'the Debian-based node:20-slim by default')
  for (const { ins } of froms) t.match(ins.args, /^(\$\{NODE_IMAGE\}|deps)( AS [a-z-]+)?$/, `FROM ${ins.args}`)
  t.equal(froms.at(-1)!.ins.args, '${NODE_IMAGE}', 'the runtime stage starts again from the bare base')
  const runs = args(all, 'RUN')
  t.ok(runs.some((r) => /\bnpm ci\b/.test(r)), 'npm ci (the lockfile)')
  t.notOk(runs.some((r) => /\bnpm (install|i)\b/.test(r)), 'never npm install')
  t.ok(runs.some((r) => /npm prune --omit=dev/.test(r)), 'dev dependencies pruned')
  const copies = args(finalStage, 'COPY')
  t.ok(copies.includes('--from=prod-deps /app/node_modules ./node_modules'), 'node_modules from the pruned stage')
  t.ok(copies.includes('--from=build /app/dist ./dist'))
  t.notOk(args(finalStage, 'RUN').some((r) => /g\+\+|python3|make\b/.test(r)), 'no compiler in the runtime image')
  // Layer caching: dependencies install from package*.json alone, before the sources arrive.
  const order = all.map((i) => `${i.keyword} ${i.args}`)
  const lock = order.indexOf('COPY package.json package-lock.json ./')
  const ci = order.findIndex((l) => l.startsWith('RUN npm ci'))
  const src = order.indexOf('COPY src ./src')
  t.ok(lock >= 0 && lock < ci && ci < src, 'package*.json, npm ci, then src/')
  t.notOk(/ENV[^\n]*NODE_EXTRA_CA_CERTS|COPY[^\n]*\.crt/.test(dockerfile), 'no build host CA baked into the image')
})

t.test('runtime: non-root, volumes, ports, health check, stop signal', async (t) => {
  const users = args(finalStage, 'USER')
  t.equal(users.length, 1)
  t.notMatch(users[0], /^(root|0)(:|$)/, 'USER is not root')
  t.same(args(finalStage, 'STOPSIGNAL'), ['SIGTERM'])
  t.same(args(finalStage, 'EXPOSE'), ['80 443 8080'])
  t.same(args(finalStage, 'VOLUME'), ['["/etc/chatgate", "/var/lib/chatgate"]'])
  const [health] = args(finalStage, 'HEALTHCHECK')
  t.match(health, /CMD \["node", "\/app\/healthcheck\.cjs"\]$/, 'node asks, no curl')
  t.ok(args(finalStage, 'COPY').includes('package.json docker/healthcheck.cjs ./'), 'the probe script is in the image')
  t.notMatch(health, /curl|wget/)
  t.match(args(finalStage, 'ENV').join(' '), /CHATGATE_HEALTH_URL=http:\/\/127\.0\.0\.1:8080\/healthz/)
  t.match(args(finalStage, 'ENV').join(' '), /CHATGATE_CONFIG=\/etc\/chatgate\/chatgate\.yaml/)
  t.match(args(finalStage, 'RUN').join(' '), /setcap cap_net_bind_service=\+ep/, '80/443 without root: file capability')
  t.same(args(finalStage, 'ENTRYPOINT'), ['["node", "dist/cli.js"]'])
})

t.test('.dockerignore keeps local state out of the build context', async (t) => {
  const ignored = file('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  for (const entry of ['node_modules', 'dist', 'data', 'coverage', '.tap', 'bench/results', '.git']) t.ok(ignored.includes(entry), entry)
})

t.test("the image's config passes ChatGate's validator", async (t) => {
  const raw = parse(file('docker/chatgate.yaml')) as unknown
  const defaults = validateConfig(raw, 'docker/chatgate.yaml', {})
  t.equal(defaults.server.host, '0.0.0.0')
  t.equal(defaults.server.port, 8080)
  t.equal(defaults.store.dir, '/var/lib/chatgate')
  t.equal(defaults.backends[0]!.url, 'http://ollama:11434', 'fallback when OLLAMA_URL is unset')
  t.equal(validateConfig(raw, 'docker/chatgate.yaml', { OLLAMA_URL: 'http://gpu1:11434' }).backends[0]!.url, 'http://gpu1:11434')
})

t.test('compose: ChatGate alone publishes 80/443; GPU reservations; volumes; configs that validate', async (t) => {
  const compose = parse(file('docker/compose.yaml')) as { services: Record<string, any>, volumes: Record<string, unknown> }
  const { chatgate, ollama, xinference, redis } = compose.services
  t.ok(redis, 'Redis')
  t.same(chatgate.ports, ['80:80', '443:443'])
  for (const [name, service] of Object.entries(compose.services)) if (name !== 'chatgate') t.notOk(service.ports, `${name} publishes no port`)
  for (const gpu of [ollama, xinference]) t.same(gpu.deploy.resources.reservations.devices, [{ driver: 'nvidia', count: 'all', capabilities: ['gpu'] }])
  t.ok(parseInt(chatgate.stop_grace_period, 10) > 30, 'stop_grace_period beyond server.shutdownGraceMs (30 s)')
  t.same(chatgate.cap_drop, ['ALL'])
  t.same(chatgate.cap_add, ['NET_BIND_SERVICE'], 'the file capability on node needs it')
  t.ok(chatgate.volumes.includes('./config:/etc/chatgate:ro'))
  const named = (s: any): string[] => s.volumes.map((v: string) => v.split(':')[0]).filter((v: string) => !v.startsWith('.'))
  for (const v of [...named(chatgate), ...named(ollama), ...named(xinference)]) t.ok(v in compose.volumes, `volume ${v} declared`)
  t.ok(chatgate.volumes.some((v: string) => v.endsWith(':/var/lib/chatgate/tls')), 'certificates on a volume of their own')

  const env = { CHATGATE_DOMAIN: 'chat.example.org', ACME_EMAIL: 'admin@example.org', BIOCHATTER_NEXT_HOST: 'next.chat.example.org' }
  const mounted = (config: string): string => file(`docker/config/${config.replace('/etc/chatgate/', '')}`)
  const plain = validateConfig(parse(mounted(chatgate.environment.CHATGATE_CONFIG)), 'compose', env)
  t.same(plain.backends.map((b) => b.url), ['http://ollama:11434', 'http://xinference:9997'], 'backends by service name')
  t.equal(plain.store.redis?.url, 'redis://redis:6379')
  t.same(plain.tls.names, ['chat.example.org'])

  const overlay = parse(file('docker/compose.biochatter.yaml')) as { services: Record<string, any> }
  for (const name of ['biochatter-light', 'biochatter-next']) t.notOk(overlay.services[name].ports, `${name} publishes no port`)
  t.equal(overlay.services['biochatter-next'].environment.BASE_URL, 'https://${CHATGATE_DOMAIN}/biochatter')
  const bio = validateConfig(parse(mounted(overlay.services.chatgate.environment.CHATGATE_CONFIG)), 'compose.biochatter', env)
  t.same(bio.proxy.routes.map((r) => [r.prefix ?? r.host, r.upstream, r.auth]), [
    ['/light', 'http://biochatter-light:8501', 'login'],
    ['next.chat.example.org', 'http://biochatter-next:3000', 'login'],
  ], 'both apps behind the login page')
  t.same(bio.tls.names, ['chat.example.org', 'next.chat.example.org'])
})
