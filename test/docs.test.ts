// /docs: the OpenAPI description of every route, generated from the route schemas. A real
// gateway (with proxied apps, a renamed BioChatter prefix, an emulated Ollama and Xinference)
// serves it without credentials; the document is valid OpenAPI, lists every route the app
// registered except those that are not API, with tags, security and body schemas; Swagger UI
// renders it in Debian's Chromium; it moves with docs.path and is gone with docs.enabled: false.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import type { FastifyInstance, RouteOptions } from 'fastify'
import t, { type Test } from 'tap'
import { parse as parseYaml } from 'yaml'
import { ConfigError, validateConfig } from '../src/config/load.js'
import { docsProblems } from '../src/config/proxy-schema.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { launchBrowser } from './helpers/browser.js'
import { startGateway, type Gateway, type TestBackend } from './helpers/gateway.js'
import { startUpstream } from './helpers/proxy-upstream.js'
import { send } from './helpers/proxy-client.js'

// Every route of every Fastify instance this file builds, seen as it is registered (Fastify
// announces each new instance on this channel before any plugin runs): the list to hold the
// document against, taken from the app itself rather than from the docs plugin.
const routesOf = new Map<FastifyInstance, RouteOptions[]>()
const onInstance = (message: unknown): void => {
  const { fastify } = message as { fastify: FastifyInstance }
  const routes: RouteOptions[] = []
  routesOf.set(fastify, routes)
  fastify.addHook('onRoute', (route) => { routes.push(route) })
}
subscribe('fastify.initialization', onInstance)
t.teardown(() => unsubscribe('fastify.initialization', onInstance))

const KNOWN_TAGS = ['OpenAI-compatible', 'Ollama-compatible', 'Xinference management', 'BioChatter', 'Account', 'Auth', 'Admin', 'Operations']
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']
const PROXY_HOST = 'webui.docs.test'
const OPEN_HOST = 'notes.docs.test'

interface Operation { tags?: string[], security?: unknown[], summary?: string, requestBody?: { required: boolean, content: Record<string, { schema: { required?: string[], properties?: Record<string, unknown> } }> } }
interface Document { openapi: string, info: { title: string, version: string, description: string }, paths: Record<string, Record<string, Operation>>, security: unknown[], components: { securitySchemes: Record<string, unknown> } }

/** `/v1/models/:uid` and `/v1/models/{model}` alike: `/v1/models/{}` (OpenAPI allows one name per path). */
const shapeOf = (url: string): string => url.replace(/:[^/]+|\{[^}]+\}/g, '{}')

/** The routes that are not API: the docs, proxied apps (and their hosts' login pages), the dashboard's page and files. */
function notApi (route: RouteOptions, docsPath: string): boolean {
  const url = route.url
  return url === docsPath || url.startsWith(`${docsPath}/`) || url.includes('*') ||
    route.config?.surface === 'proxy' || route.constraints?.chatgateProxyHost !== undefined ||
    url === '/admin' || url.startsWith('/admin/assets/')
}

/** 'GET /v1/models/{}' → the route, for every API route the app registered (HEAD copies aside). */
function apiRoutes (app: FastifyInstance, docsPath: string): Map<string, RouteOptions> {
  const routes = routesOf.get(app)
  if (routes === undefined) throw new Error('the app was not seen on the fastify.initialization channel')
  const found = new Map<string, RouteOptions>()
  for (const route of routes) {
    if (notApi(route, docsPath)) continue
    for (const method of [route.method].flat()) if (method !== 'HEAD') found.set(`${method} ${shapeOf(route.url)}`, route)
  }
  return found
}

function operations (doc: Document): Map<string, Operation & { path: string }> {
  const found = new Map<string, Operation & { path: string }>()
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) if (METHODS.includes(method)) found.set(`${method.toUpperCase()} ${shapeOf(path)}`, { ...op, path })
  }
  return found
}

async function emulatedBackends (t: Test): Promise<TestBackend[]> {
  const ollama = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  const xinference = await XinferenceEmulator.start()
  t.teardown(() => Promise.all([ollama.close(), xinference.close()]))
  return [{ name: 'o', type: 'ollama', url: ollama.url }, { name: 'x', type: 'xinference', url: xinference.url }]
}

async function documentOf (gw: Gateway, path = '/docs/json'): Promise<Document> {
  const res = await send(gw.url, path)
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${res.text}`)
  return res.json() as Document
}

t.test('the document: valid, public, every API route with its tag, security and schemas', async (t) => {
  const app = await startUpstream(t)
  const gw = await startGateway(t, await emulatedBackends(t), {
    biochatter: { prefix: '/next' },
    proxy: {
      routes: [
        { prefix: '/light', upstream: app.url, auth: 'none' },
        { host: PROXY_HOST, upstream: app.url, auth: 'login' },
        { host: OPEN_HOST, upstream: app.url, auth: 'none' },
      ],
    },
  })

  const res = await send(gw.url, '/docs/json')
  t.equal(res.status, 200, 'no credentials needed')
  t.match(res.headers['content-type'], /^application\/json/)
  const doc = res.json() as Document
  const verdict = await new Validator().validate(doc as unknown as Record<string, unknown>)
  t.same(verdict.errors, undefined, 'no validation errors')
  t.equal(verdict.valid, true, `valid OpenAPI ${doc.openapi}`)
  t.match(doc.openapi, /^3\./)

  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(doc.info.title, 'ChatGate')
  t.equal(doc.info.version, pkg.version, 'the version of package.json')
  t.match(doc.info.description, /Authorization: Bearer/)
  t.match(doc.info.description, /x-api-key: cg_/)
  t.match(doc.info.description, /HTTP Basic/)
  t.same(Object.keys(doc.components.securitySchemes), ['bearer', 'apiKey', 'basic'])
  t.match(doc.components.securitySchemes, {
    bearer: { type: 'http', scheme: 'bearer', bearerFormat: String, description: String },
    apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: String },
    basic: { type: 'http', scheme: 'basic', description: String },
  })
  t.same(doc.security, [{ bearer: [] }, { apiKey: [] }, { basic: [] }], 'any one scheme, on every route not public')

  t.test('every API route the app registered is there, and nothing else', async (t) => {
    const expected = apiRoutes(gw.app, '/docs')
    const documented = operations(doc)
    t.ok(expected.size > 50, `${expected.size} API routes registered`)
    t.same([...expected.keys()].filter((k) => !documented.has(k)), [], 'none missing from the document')
    t.same([...documented.keys()].filter((k) => !expected.has(k)), [], 'none documented that is not an API route')
    const shapes = Object.keys(doc.paths).map(shapeOf)
    t.equal(new Set(shapes).size, shapes.length, 'one template per path')
    // The routes left out were registered all the same.
    const left = (routesOf.get(gw.app) ?? []).filter((r) => notApi(r, '/docs'))
    const onHost = (r: RouteOptions): boolean => r.constraints?.chatgateProxyHost === PROXY_HOST
    t.ok(left.some((r) => r.url === '/docs/json'), 'the document itself')
    t.ok(left.some((r) => r.url === '/light/*' && r.config?.surface === 'proxy'), 'the app under /light')
    t.ok(left.some((r) => r.url === '/*' && onHost(r)), `the app on ${PROXY_HOST}`)
    t.ok(left.some((r) => r.url === '/auth/sign-in' && onHost(r)), `the login page again on ${PROXY_HOST}`)
    t.ok(left.some((r) => r.url === '/admin') && left.some((r) => r.url.startsWith('/admin/assets/')), "the dashboard's page and files")
    t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/docs') || p.startsWith('/light') || p === '/admin' || p.startsWith('/admin/assets')), 'no docs, proxy or dashboard path')

    for (const [key, route] of expected) {
      const op = documented.get(key)
      if (op === undefined) continue
      t.equal(op.tags?.length, 1, `${key}: one tag`)
      t.ok(KNOWN_TAGS.includes(op.tags?.[0] ?? ''), `${key}: tag ${String(op.tags?.[0])} is a known surface`)
      if (route.config?.public === true) t.same(op.security, [], `${key} is public: security []`)
      else t.equal(op.security, undefined, `${key} needs credentials: the global security`)
    }
  })

  t.test('tags by what a route serves', async (t) => {
    const documented = operations(doc)
    const tagOf = (key: string): string | undefined => documented.get(key)?.tags?.[0]
    const expected: Record<string, string> = {
      'POST /v1/chat/completions': 'OpenAI-compatible',
      'POST /v1/embeddings': 'OpenAI-compatible',
      'GET /v1/models': 'OpenAI-compatible',
      'GET /v1/models/{}': 'OpenAI-compatible',
      'POST /v1/models': 'Xinference management',
      'DELETE /v1/models/{}': 'Xinference management',
      'GET /v1/models/{}/progress': 'Xinference management',
      'GET /v1/cluster/auth': 'Xinference management',
      'GET /': 'Ollama-compatible',
      'POST /api/chat': 'Ollama-compatible',
      'GET /api/tags': 'Ollama-compatible',
      'POST /api/pull': 'Ollama-compatible',
      'POST /next/v1/chat/completions': 'BioChatter',
      'POST /next/v1/tokenusage': 'BioChatter',
      'GET /v1/me/keys': 'Account',
      'GET /v1/me/usage': 'Account',
      'POST /auth/login': 'Auth',
      'POST /auth/refresh': 'Auth',
      'POST /admin/keys': 'Admin',
      'GET /admin/users': 'Admin',
      'GET /healthz': 'Operations',
      'GET /readyz': 'Operations',
      'GET /metrics': 'Operations',
    }
    for (const [key, tag] of Object.entries(expected)) t.equal(tagOf(key), tag, key)
    t.equal(tagOf('POST /biochatter/v1/chat/completions'), undefined, 'the default prefix is not served when another is configured')
    t.equal(documented.get('POST /v1/chat/completions')?.summary, 'Chat completion (streamed with stream: true)')
  })

  t.test('body and query schemas as the routes validate them', async (t) => {
    const body = (path: string, method: string): { required?: string[], properties?: Record<string, unknown> } | undefined =>
      doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema
    t.same(body('/admin/keys', 'post')?.required, ['owner'])
    t.ok(['owner', 'role', 'name', 'models', 'ttl', 'limits'].every((p) => body('/admin/keys', 'post')?.properties?.[p] !== undefined), 'every property of an admin key')
    t.same(body('/auth/login', 'post')?.required, ['username', 'password'])
    t.same(doc.paths['/auth/login']?.post?.security, [], 'login is public')
    t.same(body('/v1/chat/completions', 'post')?.required, ['model', 'messages'])
    t.same([...body('/api/chat', 'post')?.required ?? []].sort(), ['messages', 'model'])
    const query = (doc.paths['/v1/me/usage']?.get as { parameters?: Array<{ in: string, name: string }> }).parameters ?? []
    t.ok(['groupBy', 'from', 'to', 'format'].every((n) => query.some((p) => p.in === 'query' && p.name === n)), 'usage query parameters')
    t.equal(doc.paths['/v1/models']?.get?.security, undefined, 'an API route takes the global security')
  })

  t.test('the YAML form is the same document', async (t) => {
    const yaml = await send(gw.url, '/docs/yaml')
    t.equal(yaml.status, 200)
    t.same(parseYaml(yaml.text), doc)
  })

  t.test('the docs need no credentials; the API still does', async (t) => {
    t.equal((await send(gw.url, '/v1/models')).status, 401, 'an API route without credentials')
    t.equal((await send(gw.url, '/admin/keys')).status, 401)
    t.equal((await send(gw.url, '/v1/models', { headers: gw.auth() })).status, 200, 'with them')
    t.equal((await send(gw.url, '/docs/json', { headers: { authorization: 'Bearer not-a-token' } })).status, 200, 'a wrong token does not matter on the docs')
    t.equal((await send(gw.url, '/docs/static/swagger-ui.css')).status, 200, 'nor on its files')
    // A host that a proxied app owns keeps every path, /docs too.
    const onAppHost = await send(gw.url, '/docs/json', { headers: { host: OPEN_HOST } })
    t.equal(onAppHost.status, 200)
    t.equal(onAppHost.json().url, '/docs/json', `the app on ${OPEN_HOST} answers /docs/json`)
    // Validation is as before: no coercion of a number into a string.
    const login = await send(gw.url, '/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 123, password: 'x' }) })
    t.equal(login.status, 400, 'bodies are validated as strictly as without the docs')
  })

  t.test('the UI page and every file it loads', async (t) => {
    for (const path of ['/docs', '/docs/']) {
      const page = await send(gw.url, path)
      t.equal(page.status, 200, path)
      t.match(page.headers['content-type'], /^text\/html/)
      t.match(page.headers['content-security-policy'], /script-src 'self'/, 'a CSP of its own')
      t.notMatch(page.headers['content-security-policy'], /upgrade-insecure-requests/, 'no upgrade to HTTPS of a plain-HTTP page')
      const files = [...page.text.matchAll(/(?:href|src)="([^"]+)"/g)].map((m) => new URL(m[1]!, `${gw.url}${path}`).pathname)
      t.ok(files.some((f) => f.endsWith('/swagger-ui-bundle.js')) && files.some((f) => f.endsWith('/swagger-initializer.js')), `${path} loads Swagger UI`)
      for (const file of files) {
        const res = await send(gw.url, file)
        t.equal(res.status, 200, `${file} without credentials`)
        t.ok(res.body.length > 0, `${file} is not empty`)
      }
    }
  })

  t.test('Swagger UI renders the operations in Chromium', async (t) => {
    const browser = await launchBrowser(t)
    const page = await browser.newPage()
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
    page.on('console', (message) => { if (message.type() === 'error') problems.push(`console: ${message.text()}`) })
    page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`))
    await page.goto(`${gw.url}/docs`)
    const chat = page.locator('.opblock-post', { has: page.locator('[data-path="/v1/chat/completions"]') }).first()
    await chat.waitFor({ timeout: 30_000 })
    t.equal(await page.locator('.info .title').first().innerText().then((s) => s.startsWith('ChatGate')), true, 'the title')
    for (const tag of KNOWN_TAGS) t.equal(await page.locator(`.opblock-tag[data-tag="${tag}"]`).count(), 1, `section ${tag}`)
    // Opened: the request body's schema, with its required properties.
    await chat.locator('.opblock-summary').first().click()
    await chat.locator('.opblock-section-request-body').waitFor({ timeout: 10_000 })
    await chat.locator('.model-example .tablinks[data-name="model"]').first().click()
    await chat.locator('.model-box').first().waitFor()
    const schema = await chat.locator('.opblock-section-request-body').innerText()
    t.match(schema, /model/)
    t.match(schema, /messages/)
    t.equal(await page.locator('.authorize').count(), 1, 'the Authorize button for the security schemes')
    t.same(problems, [], 'no script error, CSP refusal or failed request')
  })
})

t.test('docs.path moves the docs, docs.enabled: false removes them', async (t) => {
  const backends = await emulatedBackends(t)
  const moved = await startGateway(t, backends, { docs: { path: '/api-docs' } })
  const doc = await documentOf(moved, '/api-docs/json')
  t.ok(doc.paths['/v1/chat/completions'] !== undefined, 'at the new path')
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/api-docs')), 'without itself')
  t.equal((await send(moved.url, '/api-docs')).status, 200, 'the UI there')
  t.equal((await send(moved.url, '/docs/json', { headers: moved.auth('admin') })).status, 404, 'nothing at /docs')
  const expected = apiRoutes(moved.app, '/api-docs')
  t.same([...expected.keys()].filter((k) => !operations(doc).has(k)), [], 'every API route')

  const off = await startGateway(t, backends, { docs: { enabled: false } })
  for (const path of ['/docs', '/docs/', '/docs/json', '/docs/yaml', '/docs/static/swagger-ui.css']) {
    t.equal((await send(off.url, path, { headers: off.auth('admin') })).status, 404, `${path}: 404`)
    // Unknown paths are not public: without credentials the answer is the 401, as anywhere.
    t.equal((await send(off.url, path)).status, 401, `${path} without credentials: 401`)
  }
  t.equal((await send(off.url, '/v1/models', { headers: off.auth() })).status, 200, 'the API is there')
})

t.test('a proxied app on the docs path is refused by config key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-docs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const raw = (extra: Record<string, unknown>): Record<string, unknown> => ({
    server: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' }, store: { dir }, backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:9' }], ...extra,
  })
  let err: unknown
  try {
    validateConfig(raw({ proxy: { routes: [{ prefix: '/docs', upstream: 'http://127.0.0.1:9' }] } }))
  } catch (e) {
    err = e
  }
  t.ok(err instanceof ConfigError, 'refused when the config is read (check-config too)')
  t.match((err as ConfigError).problems, [/^docs\.path: "\/docs" overlaps proxy\.routes\[0\]\.prefix "\/docs"/])

  // Read with the docs off (an overlap would refuse the file), then asked as if they were on.
  const problemsWith = (docs: { path?: string, enabled?: boolean }, route: Record<string, unknown>): string[] => {
    const config = validateConfig(raw({ docs: { ...docs, enabled: false }, proxy: { routes: [{ upstream: 'http://127.0.0.1:9', ...route }] } }))
    return docsProblems({ ...config, docs: { ...config.docs, enabled: docs.enabled ?? true } })
  }
  t.equal(problemsWith({}, { prefix: '/docs/app' }).length, 1, 'an app under the docs')
  t.equal(problemsWith({ path: '/app/docs' }, { prefix: '/app' }).length, 1, 'docs under an app')
  t.same(problemsWith({}, { prefix: '/documents' }), [], 'a longer name is another path')
  t.same(problemsWith({}, { prefix: '/docs', host: 'docs.lab.test' }), [], 'an app with a host of its own keeps its paths')
  t.same(problemsWith({ enabled: false }, { prefix: '/docs' }), [], 'no docs, no overlap')
})
