import t from 'tap'
import { parse } from 'yaml'
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, configPathFrom, loadConfig, validateConfig } from '../src/config/load.js'
import { SCHEMA_FILE, configJsonSchema } from '../src/config/json-schema.js'

const dir = mkdtempSync(join(tmpdir(), 'chatgate-config-'))
const write = (name: string, text: string): string => {
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}
const problems = (fn: () => unknown): string[] => {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('the shipped default config loads as is', async (t) => {
  const config = loadConfig('config/chatgate.yaml')
  t.equal(config.server.host, '127.0.0.1')
  t.equal(config.server.port, 8080)
  t.same(config.backends.map((b) => [b.type, b.url]), [['ollama', 'http://127.0.0.1:11434']])
  t.equal(config.auth.jwt.secret, undefined, 'no secret: one is generated on first start')
  t.equal(config.store.dir, 'data')
})

t.test('the example config documents keys that all validate', async (t) => {
  const config = loadConfig('config/chatgate.example.yaml', { CHATGATE_JWT_SECRET: 'x'.repeat(40), XINFERENCE_API_KEY: 'k' })
  t.equal(config.backends.length, 2)
  t.equal(config.backends[1]!.apiKey, 'k')
  t.equal(config.models.aliases.default, 'llama3.1:8b')
  t.equal(config.routing.maxWaiting, 64)
  t.same(config.auth.signIn.providers.map((p) => p.type), ['github', 'oidc'])
})

t.test('the generated JSON Schema in config/ is current', async (t) => {
  t.equal(readFileSync(SCHEMA_FILE, 'utf8'), configJsonSchema(), 'run `npm run schema` after changing src/config/schema.ts')
  const schema = JSON.parse(configJsonSchema())
  t.same(schema.required, ['backends'], 'sections with defaults may be left out')
})

t.test('${NAME} is replaced from the environment', async (t) => {
  const file = write('env.yaml', 'backends:\n  - name: a\n    type: openai\n    url: ${UPSTREAM}\n    apiKey: ${KEY:-fallback}\n')
  const config = loadConfig(file, { UPSTREAM: 'http://10.1.1.1:8000' })
  t.equal(config.backends[0]!.url, 'http://10.1.1.1:8000')
  t.equal(config.backends[0]!.apiKey, 'fallback')
  t.same(problems(() => loadConfig(file, {})), ['backends[0].url: environment variable UPSTREAM is not set'])
})

t.test('every problem is reported by its path', async (t) => {
  const found = problems(() => validateConfig({
    server: { port: 70000, colour: 'red' },
    backends: [
      { name: 'ok', type: 'ollama', url: 'http://127.0.0.1:11434' },
      { name: 'bad', type: 'llamafile', url: 'ftp://x' },
    ],
    log: { level: 'loud' },
    auth: { jwt: { tokenTtl: '5x' } },
  }))
  t.match(found.join('\n'), /server\.port: must be integer less or equal to 65535|server\.port: .*65535/)
  t.match(found.join('\n'), /server\.colour: unknown key/)
  t.match(found.join('\n'), /backends\[1\]\.type: must be one of: ollama, xinference, openai/)
  t.match(found.join('\n'), /backends\[1\]\.url: must be an http\(s\) URL/)
  t.match(found.join('\n'), /log\.level: must be one of: fatal, error/)
  t.match(found.join('\n'), /auth\.jwt\.tokenTtl: must be a duration like 1h \(s, m, h, d\)/)
})

t.test('missing backends and empty files are refused', async (t) => {
  t.match(problems(() => loadConfig(write('empty.yaml', ''))), [/backends: is required|backends/])
  t.match(problems(() => loadConfig(write('nobackends.yaml', 'backends: []\n'))), [/backends: must have at least 1|backends:/])
  t.match(problems(() => loadConfig(join(dir, 'missing.yaml'))), [/cannot read file/])
  t.match(problems(() => loadConfig(write('broken.yaml', 'backends: [\n'))), [/^YAML: /])
})

t.test('rules across keys', async (t) => {
  const b = (name: string) => ({ name, type: 'ollama', url: 'http://127.0.0.1:1' })
  t.same(problems(() => validateConfig({ backends: [b('a'), b('a')] })), ['backends[1].name: "a" is already used by backends[0]'])
  t.same(problems(() => validateConfig({ backends: [b('a')], models: { aliases: { x: 'y', y: 'z' } } })), ['models.aliases.x: points at another alias ("y"); name a model'])
  const user = { username: 'u', passwordHash: 'scrypt$1$1$1$a$b' }
  t.same(problems(() => validateConfig({ backends: [b('a')], auth: { users: [user, user] } })), ['auth.users[1].username: "u" appears twice'])
  t.same(problems(() => validateConfig({ backends: [b('a')], auth: { jwt: { algorithm: 'RS256' } } })), ['auth.jwt.publicKeyFile: is required for RS256'])
  t.same(problems(() => validateConfig({ backends: [b('a')], auth: { jwt: { algorithm: 'RS256', publicKeyFile: 'x', secret: 'y'.repeat(32) } } })), ['auth.jwt.secret: only HS256 uses a secret; RS256 uses key files'])
  t.same(problems(() => validateConfig({ backends: [b('a')], auth: { jwt: { publicKeyFile: 'x' } } })), ['auth.jwt: key files are for RS256/ES256/EdDSA; HS256 uses auth.jwt.secret'])
  t.match(problems(() => validateConfig({ backends: [b('a')], auth: { jwt: { secret: 'short' } } })), [/auth\.jwt\.secret: .*32/])
})

t.test('config path: flag, then CHATGATE_CONFIG, then the default', async (t) => {
  t.equal(configPathFrom('a.yaml', { CHATGATE_CONFIG: 'b.yaml' }), 'a.yaml')
  t.equal(configPathFrom(undefined, { CHATGATE_CONFIG: 'b.yaml' }), 'b.yaml')
  t.equal(configPathFrom(undefined, {}), 'config/chatgate.yaml')
})

t.test('the example config shows each TLS mode, and each of those blocks validates', async (t) => {
  const text = readFileSync('config/chatgate.example.yaml', 'utf8')
  const tls = text.slice(text.indexOf('\ntls:\n'), text.indexOf('\nauth:\n'))
  // Blocks start at "  # --- <mode>:"; uncommented, each is a tls section of its own.
  const blocks = tls.split(/\n {2}# --- /).slice(1).map((block) => block.split('\n').filter((l) => l.startsWith('  # ')).map((l) => `  ${l.slice(4)}`).join('\n'))
  const modes: string[] = []
  for (const block of blocks) {
    const doc = parse(`tls:\n${block}\n`) as { tls: { mode?: string } }
    const mode = doc.tls.mode ?? 'acme'
    modes.push(mode)
    const config = validateConfig({ ...doc, tls: { mode, ...doc.tls }, backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:11434' }] }, 'example', { EAB_KID: 'kid', EAB_HMAC: 'hmac' })
    t.equal(config.tls.mode, mode, `the ${mode} block validates`)
  }
  t.same(modes.sort(), ['acme', 'manual', 'self-signed'])
})
