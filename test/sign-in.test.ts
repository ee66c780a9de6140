// ChatGate's login page (the login gate's sign-in): CSRF-protected form, session cookie
// attributes, same-origin return only, sign-out ending the session in the store.
import t, { type Test } from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { sameOriginPath } from '../src/auth/login-gate.js'

async function setup (t: Test, extra: Record<string, unknown> = {}): Promise<Gateway> {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], extra)
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password', email: 'alice@lab.example' })
  return gw
}

interface Form { csrf: string, cookie: string, html: string, status: number, headers: Headers }

/** The login page as a browser gets it: its CSRF field and the CSRF secret cookie. */
async function openPage (gw: Gateway, query = ''): Promise<Form> {
  const res = await fetch(`${gw.url}/auth/sign-in${query}`)
  const html = await res.text()
  const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? ''
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
  return { csrf, cookie, html, status: res.status, headers: res.headers }
}

function submit (gw: Gateway, form: Form, fields: Record<string, string>): Promise<Response> {
  return fetch(`${gw.url}/auth/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookie },
    body: new URLSearchParams({ _csrf: form.csrf, ...fields }).toString(),
  })
}

t.test('the login page: a form with a CSRF token, no scripts, not cached', async (t) => {
  const gw = await setup(t)
  const page = await openPage(gw, '?rd=%2Fwebui%2Fchat%3Fid%3D1')
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.equal(page.headers.get('cache-control'), 'no-store')
  t.match(page.headers.get('content-security-policy'), /default-src 'none'/)
  t.ok(page.csrf.length > 10, 'a CSRF token in the form')
  t.match(page.html, /name="rd" value="\/webui\/chat\?id=1"/)
  t.notMatch(page.html, /<script/i)
  t.match(page.cookie, /^chatgate_csrf=/)
})

t.test('signing in sets the session cookie and returns to the page asked for', async (t) => {
  const gw = await setup(t)
  const page = await openPage(gw)
  const res = await submit(gw, page, { username: 'alice', password: 'alice-password', rd: '/webui/chat?id=1' })
  t.equal(res.status, 303)
  t.equal(res.headers.get('location'), '/webui/chat?id=1')
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('chatgate_session='))!
  t.match(cookie, /^chatgate_session=cgb_[A-Za-z0-9_-]{43}; /)
  t.match(cookie, /; Path=\//)
  t.match(cookie, /; HttpOnly/)
  t.match(cookie, /; SameSite=Lax/)
  t.match(cookie, /; Expires=/)
  t.notMatch(cookie, /Secure/, 'plain HTTP here: Secure only over HTTPS')
  const value = cookie.split(';')[0]!.slice('chatgate_session='.length)
  const session = gw.app.gateway.sessions.browserSession(value)
  t.equal(session?.user, 'alice', 'the store knows the session')

  // Sign-out ends it in the store (a copied cookie is worthless) and clears it in the browser.
  const out = await fetch(`${gw.url}/auth/sign-out`, { redirect: 'manual', headers: { cookie: `chatgate_session=${value}` } })
  t.equal(out.status, 303)
  t.equal(out.headers.get('location'), '/auth/sign-in?signed_out=1')
  t.match(out.headers.getSetCookie().join('\n'), /chatgate_session=;/)
  t.equal(gw.app.gateway.sessions.browserSession(value), undefined)
  t.match((await openPage(gw, '?signed_out=1')).html, /You are signed out/)
})

t.test('wrong password, unknown user, disabled user, missing or foreign CSRF token: the page again, no cookie', async (t) => {
  const gw = await setup(t)
  await gw.app.gateway.users.add({ name: 'bob', password: 'bob-password' })
  gw.app.gateway.users.setEnabled('bob', false)
  for (const [username, password] of [['alice', 'nope'], ['mallory', 'x'], ['bob', 'bob-password'], ['', '']]) {
    const page = await openPage(gw)
    const res = await submit(gw, page, { username: username!, password: password!, rd: '/x' })
    t.equal(res.status, 401, `${username}: refused`)
    t.match(await res.text(), /Wrong user name or password/)
    t.notOk(res.headers.getSetCookie().some((c) => c.startsWith('chatgate_session=')))
  }
  const page = await openPage(gw)
  const noToken = await submit(gw, { ...page, csrf: '' }, { username: 'alice', password: 'alice-password' })
  t.equal(noToken.status, 403)
  t.match(await noToken.text(), /form expired or came from another site/)
  const other = await openPage(gw)
  const foreign = await submit(gw, { ...page, csrf: other.csrf }, { username: 'alice', password: 'alice-password' })
  t.equal(foreign.status, 403, "another browser's token does not fit this browser's secret")
  const noCookie = await submit(gw, { ...page, cookie: '' }, { username: 'alice', password: 'alice-password' })
  t.equal(noCookie.status, 403)
})

t.test('sign-in attempts are rate-limited per client', async (t) => {
  const gw = await setup(t, { auth: { loginPerMinute: 2 } })
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) {
    const page = await openPage(gw)
    statuses.push((await submit(gw, page, { username: 'alice', password: 'wrong' })).status)
  }
  t.same(statuses, [401, 401, 429])
})

t.test('only same-site paths are returned to', async (t) => {
  t.equal(sameOriginPath('/webui/?a=1#x'), '/webui/?a=1#x')
  for (const evil of ['//evil.example/x', '/\\evil.example', 'https://evil.example/', 'javascript:alert(1)', '', undefined, 42, '/%2F%2Fevil']) {
    const target = sameOriginPath(evil)
    t.ok(target.startsWith('/') && !target.startsWith('//'), `${String(evil)} → ${target}`)
  }
  t.equal(sameOriginPath('//evil.example/x'), '/')
  t.equal(sameOriginPath('https://evil.example/'), '/')
})
