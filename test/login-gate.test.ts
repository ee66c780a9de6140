// The login gate (the oauth2-proxy role) in a real browser: Debian's Chromium driven by
// playwright-core visits a web app behind ChatGate (`auth: login`), lands on ChatGate's login
// page, signs in, comes back to the page it asked for with its identity seen by the app, and
// signs out.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { OllamaEmulator } from './emulators/ollama.js'
import { launchBrowser } from './helpers/browser.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { send } from './helpers/proxy-client.js'

interface App { url: string, seen: IncomingMessage['headers'][] }

/** A web app that shows who the gateway says the user is. */
async function identityApp (t: Test): Promise<App> {
  const seen: IncomingMessage['headers'][] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers)
    res.setHeader('content-type', 'text/html; charset=utf-8')
    const who = `user=${req.headers['x-forwarded-user'] ?? '-'} email=${req.headers['x-forwarded-email'] ?? '-'} groups=${req.headers['x-forwarded-groups'] ?? '-'}`
    res.end(`<!doctype html><title>App</title><p id="who">${who}</p><p id="path">${req.url}</p><a id="out" href="/auth/sign-out">sign out</a>`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

async function setup (t: Test): Promise<{ gw: Gateway, app: App }> {
  const app = await identityApp(t)
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], {
    proxy: { routes: [{ prefix: '/app', upstream: app.url, auth: 'login' }] },
  })
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password', email: 'alice@lab.example' })
  return { gw, app }
}

t.test('a browser signs in on the login page, returns to its page with its identity at the app, and signs out', async (t) => {
  const { gw, app } = await setup(t)
  const browser = await launchBrowser(t)
  const context = await browser.newContext()
  const page = await context.newPage()

  await page.goto(`${gw.url}/app/notes?id=7`)
  t.equal(new URL(page.url()).pathname, '/auth/sign-in', 'an unknown browser lands on the login page')
  t.equal(new URL(page.url()).searchParams.get('rd'), '/app/notes?id=7')
  t.equal(app.seen.length, 0, 'the app saw nothing of it')

  await page.fill('#username', 'alice')
  await page.fill('#password', 'wrong')
  await page.click('button[type=submit]')
  t.match(await page.textContent('.problem'), /Wrong user name or password/)

  await page.fill('#username', 'alice')
  await page.fill('#password', 'alice-password')
  await page.click('button[type=submit]')
  await page.waitForSelector('#who')
  t.equal(new URL(page.url()).pathname + new URL(page.url()).search, '/app/notes?id=7', 'back where it wanted to go')
  t.equal(await page.textContent('#who'), 'user=alice email=alice@lab.example groups=user')
  t.equal(await page.textContent('#path'), '/notes?id=7', 'the prefix stripped on the way to the app')

  const session = (await context.cookies()).find((c) => c.name === 'chatgate_session')!
  t.ok(session, 'the session cookie is set')
  t.equal(session.httpOnly, true)
  t.equal(session.sameSite, 'Lax')
  t.equal(session.path, '/')

  // Identity headers a page sends itself are dropped: nobody poses as anyone.
  await page.setExtraHTTPHeaders({ 'x-forwarded-user': 'root', 'x-forwarded-groups': 'admin' })
  await page.reload()
  t.equal(await page.textContent('#who'), 'user=alice email=alice@lab.example groups=user')
  await page.setExtraHTTPHeaders({})

  await page.click('#out')
  await page.waitForSelector('form')
  t.equal(new URL(page.url()).pathname, '/auth/sign-in')
  t.match(await page.textContent('body'), /You are signed out/)
  t.notOk((await context.cookies()).some((c) => c.name === 'chatgate_session'), 'the cookie is gone')
  t.equal(gw.app.gateway.sessions.browserSession(session.value), undefined, 'and the session ended in the store')

  await page.goto(`${gw.url}/app/notes`)
  t.equal(new URL(page.url()).pathname, '/auth/sign-in', 'signed out: the login page again')
})

t.test('without a browser session: API calls get 401, pages a redirect; a copied cookie dies with the session', async (t) => {
  const { gw, app } = await setup(t)
  const api = await fetch(`${gw.url}/app/api/items`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(api.status, 401)
  t.match(await api.text(), /sign in first: \/auth\/sign-in/)
  const json = await fetch(`${gw.url}/app/api/items`, { headers: { accept: 'application/json' } })
  t.equal(json.status, 401, 'no redirect for what is not a page visit')
  const visit = await fetch(`${gw.url}/app/`, { redirect: 'manual', headers: { accept: 'text/html' } })
  t.equal(visit.status, 302)
  t.equal(visit.headers.get('location'), '/auth/sign-in?rd=%2Fapp%2F')
  t.equal((await fetch(`${gw.url}/app/`, { redirect: 'manual', headers: { ...gw.auth('user', 'alice'), accept: 'text/html' } })).status, 302, 'a bearer token is not a browser session')

  const { cookie } = gw.app.gateway.sessions.startBrowser('alice', 60)
  const signedIn = await fetch(`${gw.url}/app/x`, { headers: { cookie: `chatgate_session=${cookie}` } })
  t.equal(signedIn.status, 200)
  gw.app.gateway.users.setEnabled('alice', false)
  t.equal((await fetch(`${gw.url}/app/x`, { headers: { cookie: `chatgate_session=${cookie}` } })).status, 401, 'disabling the user ends the session')
  t.equal(app.seen.length, 1)
})

t.test('a host the proxy owns has its own login page: no redirect loop, the cookie is that host\'s', async (t) => {
  const app = await identityApp(t)
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], {
    proxy: { routes: [{ host: 'webui.example.org', upstream: app.url, auth: 'login' }, { host: 'open.example.org', upstream: app.url, auth: 'none' }] },
  })
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password' })
  const host = { host: 'webui.example.org', accept: 'text/html' }
  const visit = await send(gw.url, '/chat', { headers: host })
  t.equal(visit.status, 302)
  t.equal(visit.headers.location, '/auth/sign-in?rd=%2Fchat')
  const page = await send(gw.url, '/auth/sign-in?rd=%2Fchat', { headers: host })
  t.equal(page.status, 200)
  t.match(page.text, /<form method="post" action="\/auth\/sign-in">/, "ChatGate's login page, not the app")
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!
  const csrfCookie = (page.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ')
  const signedIn = await send(gw.url, '/auth/sign-in', {
    method: 'POST',
    headers: { ...host, 'content-type': 'application/x-www-form-urlencoded', cookie: csrfCookie },
    body: new URLSearchParams({ _csrf: csrf, username: 'alice', password: 'alice-password', rd: '/chat' }).toString(),
  })
  t.equal(signedIn.status, 303)
  t.equal(signedIn.headers.location, '/chat')
  const session = (signedIn.headers['set-cookie'] ?? []).find((c) => c.startsWith('chatgate_session='))!.split(';')[0]!
  const chat = await send(gw.url, '/chat', { headers: { ...host, cookie: session } })
  t.equal(chat.status, 200)
  t.match(chat.text, /user=alice/)
  t.equal(app.seen.length, 1, 'the app saw only the signed-in request')
  const other = await send(gw.url, '/auth/sign-in', { headers: { host: 'open.example.org' } })
  t.notMatch(other.text, /<form method="post"/, 'a host without the login gate stays all the app\'s')
})
