// server.cors.origins: pages on other sites (and browser extensions) may call the API; preflights
// are answered before authentication, every answer to an allowed origin (errors and streams too)
// carries Access-Control-Allow-Origin, and nothing changes when no origin is configured.
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import { OllamaEmulator } from './emulators/ollama.js'
import { launchBrowser } from './helpers/browser.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { ConfigError, validateConfig } from '../src/config/load.js'

const PAGE = 'https://chat.lab.test'
const ORIGINS = [PAGE, 'chrome-extension://*', 'https://*.lab.org']
const chatBody = (stream: boolean): string => JSON.stringify({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }], stream })

async function gateway (t: Test, origins?: string[]): Promise<{ gw: Gateway, o: OllamaEmulator }> {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], origins === undefined ? {} : { server: { cors: { origins } } })
  return { gw, o }
}

/** A browser's preflight for a POST with a token, as the openai SDK sends it. */
const preflight = (gw: Gateway, path: string, origin: string): Promise<Response> => fetch(`${gw.url}${path}`, {
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-stainless-os' },
})

const chats = (o: OllamaEmulator): number => o.requests.filter((r) => r.path === '/api/chat').length

t.test('preflights are answered without credentials, for the configured origins only', async (t) => {
  const { gw, o } = await gateway(t, ORIGINS)
  const before = chats(o)
  const ok = await preflight(gw, '/v1/chat/completions', PAGE)
  t.equal(ok.status, 204)
  t.equal(ok.headers.get('access-control-allow-origin'), PAGE)
  t.match(ok.headers.get('access-control-allow-methods'), /\bPOST\b/)
  t.equal(ok.headers.get('access-control-allow-headers'), 'authorization,content-type,x-stainless-os', 'the headers asked for')
  t.equal(ok.headers.get('access-control-max-age'), '600')
  t.match(ok.headers.get('vary'), /Origin/)
  const allowed = async (origin: string, path = '/api/chat'): Promise<string | null> => (await preflight(gw, path, origin)).headers.get('access-control-allow-origin')
  t.equal(await allowed('chrome-extension://abcdefghijklmnop'), 'chrome-extension://abcdefghijklmnop', 'a browser extension, by pattern')
  t.equal(await allowed('https://notes.lab.org'), 'https://notes.lab.org', 'a subdomain, by pattern')
  t.equal(await allowed('https://lab.org.evil.test'), null, 'a pattern matches the whole origin only')
  t.equal(await allowed('https://evil.test'), null)
  t.equal(await allowed('http://chat.lab.test'), null, 'the scheme counts')
  t.equal(chats(o), before, 'no preflight reached a backend')
})

t.test('answers to an allowed origin carry its header: whole, streamed, and errors', async (t) => {
  const { gw } = await gateway(t, ORIGINS)
  const post = (body: string, headers: Record<string, string>): Promise<Response> =>
    fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  const whole = await post(chatBody(false), { ...gw.auth(), origin: PAGE })
  t.equal(whole.status, 200)
  t.equal(whole.headers.get('access-control-allow-origin'), PAGE)
  t.match(whole.headers.get('access-control-expose-headers'), /x-ratelimit-remaining/, 'the page may read its limits')
  t.match(await whole.json(), { choices: [{ message: { content: 'Hello from llama3.2:latest!' } }] })
  const streamed = await post(chatBody(true), { ...gw.auth(), origin: PAGE })
  t.equal(streamed.headers.get('access-control-allow-origin'), PAGE)
  t.match(await streamed.text(), /data: \[DONE\]/)
  const refused = await post(chatBody(false), { origin: PAGE })
  t.equal(refused.status, 401)
  t.equal(refused.headers.get('access-control-allow-origin'), PAGE, 'so that the page can read why')
  t.match(await refused.json(), { error: { code: 'missing_credentials' } })
  const other = await post(chatBody(false), { ...gw.auth(), origin: 'https://evil.test' })
  t.equal(other.headers.get('access-control-allow-origin'), null, 'another origin gets no permission to read')
})

t.test('a proxied web app answers cross-origin calls itself: ChatGate adds nothing to its answers', async (t) => {
  const app = createServer((req, res) => {
    res.setHeader('access-control-allow-origin', 'https://app-decides.test')
    res.end(req.method === 'OPTIONS' ? '' : 'app page')
  })
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { app.close() })
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'] })
  t.teardown(() => o.close())
  const upstream = `http://127.0.0.1:${(app.address() as { port: number }).port}`
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { server: { cors: { origins: ['*'] } }, proxy: { routes: [{ prefix: '/app', upstream, auth: 'none' }] } })
  const page = await fetch(`${gw.url}/app/`, { headers: { origin: PAGE } })
  t.equal(await page.text(), 'app page')
  t.equal(page.headers.get('access-control-allow-origin'), 'https://app-decides.test', 'the app\'s own header, alone')
  const pre = await preflight(gw, '/app/upload', PAGE)
  t.equal(pre.headers.get('access-control-allow-origin'), 'https://app-decides.test', 'the app answers its preflights')
  t.equal((await preflight(gw, '/api/chat', PAGE)).headers.get('access-control-allow-origin'), '*', 'the API: any origin, as configured')
})

t.test('with no origin configured, no cross-origin call is allowed', async (t) => {
  const { gw } = await gateway(t)
  const pre = await preflight(gw, '/v1/chat/completions', PAGE)
  t.not(pre.status, 204)
  t.equal(pre.headers.get('access-control-allow-origin'), null)
  const res = await fetch(`${gw.url}/api/tags`, { headers: { ...gw.auth(), origin: PAGE } })
  t.equal(res.status, 200)
  t.equal(res.headers.get('access-control-allow-origin'), null)
})

t.test('a malformed origin in the config is refused by its path', async (t) => {
  const problems = (origin: string): string[] => {
    try {
      validateConfig({ backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:11434' }], server: { cors: { origins: [origin] } } })
      return []
    } catch (err) {
      return err instanceof ConfigError ? err.problems : [String(err)]
    }
  }
  for (const bad of ['https://chat.lab.test/', 'chat.lab.test', 'https://chat lab']) t.match(problems(bad), [/^server\.cors\.origins\[0\]: must be a web origin/], bad)
  t.same(problems('http://127.0.0.1:3000'), [], 'an origin with a port')
})

t.test('in Chromium: a page on another origin chats through the gateway only when its origin is allowed', async (t) => {
  const page = createServer((_req, res) => { res.setHeader('content-type', 'text/html'); res.end('<!doctype html><title>chat page</title>') })
  await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { page.close() })
  const pageOrigin = `http://127.0.0.1:${(page.address() as { port: number }).port}`
  const allowed = await gateway(t, [pageOrigin])
  const closed = await gateway(t)
  const browser = await launchBrowser(t)
  const tab = await (await browser.newContext()).newPage()
  await tab.goto(pageOrigin)
  const call = (gw: Gateway): Promise<unknown> => tab.evaluate(async ({ url, token, body }) => {
    try {
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })
      const answer = await res.json() as { choices: Array<{ message: { content: string } }> }
      return { status: res.status, content: answer.choices[0]!.message.content, remaining: res.headers.get('x-ratelimit-remaining') }
    } catch (err) {
      return { failed: String(err) }
    }
  }, { url: gw.url, token: gw.token(), body: chatBody(false) })
  t.match(await call(allowed.gw), { status: 200, content: 'Hello from llama3.2:latest!', remaining: /^\d+$/ })
  t.match(await call(closed.gw), { failed: /Failed to fetch/ }, 'the browser blocks it')
})
