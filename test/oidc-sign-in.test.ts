// Sign-in through OpenID Connect (authorization code + PKCE, openid-client) against a real local
// provider (oidc-provider on port 0): in Debian's Chromium from a guarded app to the provider's
// login and back, users created on the first sign-in, groups and e-mail domains enforced, a
// provider that is down at first.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { userNameFrom } from '../src/auth/external/sign-in.js'
import { validateConfig } from '../src/config/load.js'
import { withoutSecrets } from '../src/logging.js'
import { OllamaEmulator } from './emulators/ollama.js'
import { launchBrowser } from './helpers/browser.js'
import { captureLog } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { signInAtProvider, startOidcProvider, type OidcAccount, type OidcProviderHarness } from './helpers/oidc-provider.js'
import { WebClient } from './helpers/web-client.js'

const SECRET = 'oidc-client-secret-for-tests'

const ACCOUNTS: OidcAccount[] = [
  { sub: 'jane', preferred_username: 'jane', email: 'jane@lab.example', email_verified: true, groups: ['llm-users', 'staff'] },
  { sub: 'bob', preferred_username: 'bob', email: 'bob@lab.example', email_verified: true, groups: ['students'] },
  { sub: 'carol', preferred_username: 'carol', email: 'carol@else.example', email_verified: true, groups: ['llm-users'] },
  { sub: 'dave', preferred_username: 'dave', email: 'dave@lab.example', email_verified: false, groups: ['llm-users'] },
  { sub: 'eve-7f3a', email: 'Eve@Lab.Example', email_verified: true, groups: ['llm-users'] },
]

interface Setup { gw: Gateway, idp: OidcProviderHarness, seen: IncomingMessage['headers'][], log: () => string }

async function setup (t: Test, provider: Record<string, unknown> = {}, serve = true): Promise<Setup> {
  const idp = await startOidcProvider(t, ACCOUNTS)
  // A web app that shows who the gateway says the user is.
  const seen: IncomingMessage['headers'][] = []
  const app = createServer((req, res) => {
    seen.push(req.headers)
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(`<!doctype html><title>App</title><p id="who">user=${req.headers['x-forwarded-user']} email=${req.headers['x-forwarded-email']}</p><a id="out" href="/auth/sign-out">sign out</a>`)
  })
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { app.closeAllConnections(); app.close(() => resolve()) }))
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], {
    log: { level: 'info' },
    auth: {
      signIn: {
        providers: [{
          type: 'oidc', name: 'lab', title: 'Lab ID', issuer: idp.issuer, clientId: 'chatgate', clientSecret: SECRET, allowHttp: true,
          scopes: ['openid', 'email', 'profile', 'groups'], allowedGroups: ['llm-users'], allowedEmailDomains: ['lab.example'], ...provider,
        }],
      },
    },
    proxy: { routes: [{ prefix: '/app', upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, auth: 'login' }] },
  }, { logStream: log.stream })
  const method = provider.tokenEndpointAuth as 'client_secret_post' | undefined ?? 'client_secret_basic'
  if (serve) idp.serve({ clientId: 'chatgate', clientSecret: SECRET, redirectUris: [`${gw.url}/auth/callback/lab`], tokenEndpointAuthMethod: method })
  return { gw, idp, seen, log: log.text }
}

/** The whole flow without a browser: ChatGate's start, the provider's login, ChatGate's callback. */
async function signIn (s: Setup, login: string): Promise<{ browser: WebClient, res: Response, html: string }> {
  const browser = new WebClient()
  const start = await browser.fetch(`${s.gw.url}/auth/sign-in/lab?rd=%2Fapp%2Fx`)
  if (start.status !== 302) return { browser, res: start, html: await start.text() }
  const callback = await signInAtProvider(start.headers.get('location')!, login, browser)
  const res = await browser.fetch(callback)
  return { browser, res, html: await res.text() }
}

t.test('in Chromium: a guarded app, the login page, the provider\'s login, and back with the identity; sign-out', async (t) => {
  const s = await setup(t)
  const browser = await launchBrowser(t)
  const page = await (await browser.newContext()).newPage()
  await page.goto(`${s.gw.url}/app/notes?id=7`)
  t.equal(new URL(page.url()).pathname, '/auth/sign-in')
  await page.click('text=Sign in with Lab ID')
  t.equal(new URL(page.url()).origin, s.idp.issuer, 'at the provider')
  await page.fill('input[name=login]', 'jane')
  await page.fill('input[name=password]', 'whatever')
  await page.click('button[type=submit]')
  await page.waitForURL(`${s.gw.url}/app/notes?id=7`)
  t.equal(await page.textContent('#who'), 'user=jane email=jane@lab.example', 'the app sees the user the provider signed in')
  t.match(s.gw.app.gateway.users.get('jane'), { role: 'user', source: 'store', email: 'jane@lab.example', enabled: true })
  const cookies = await page.context().cookies(s.gw.url)
  t.match(cookies.find((c) => c.name === 'chatgate_session'), { httpOnly: true, sameSite: 'Lax' })
  t.notOk(cookies.some((c) => c.name === 'chatgate_signin'), 'the sign-in cookie is gone')

  await page.click('#out')
  t.equal(new URL(page.url()).pathname, '/auth/sign-in')
  await page.goto(`${s.gw.url}/app/notes`)
  t.equal(new URL(page.url()).pathname, '/auth/sign-in', 'signed out: the app is closed again')
})

t.test('groups, e-mail domains and verified addresses are enforced; names fall back to the address', async (t) => {
  const s = await setup(t)
  const bob = await signIn(s, 'bob')
  t.equal(bob.res.status, 403)
  t.match(bob.html, /your Lab ID account is in none of the groups allowed here/)
  const carol = await signIn(s, 'carol')
  t.equal(carol.res.status, 403)
  t.match(carol.html, /addresses at else.example may not sign in here/)
  const dave = await signIn(s, 'dave')
  t.equal(dave.res.status, 403)
  t.match(dave.html, /no verified e-mail address/)
  for (const name of ['bob', 'carol', 'dave']) t.equal(s.gw.app.gateway.users.get(name), undefined, `${name}: no user`)
  t.equal(s.seen.length, 0, 'the app saw none of them')

  const eve = await signIn(s, 'eve-7f3a')
  t.equal(eve.res.status, 303)
  t.equal(eve.res.headers.get('location'), '/app/x')
  t.match(s.gw.app.gateway.users.get('Eve@Lab.Example'), { email: 'Eve@Lab.Example' }, 'no preferred_username: named by the address')
  const again = await signIn(s, 'eve-7f3a')
  t.equal(again.res.status, 303, 'the second sign-in finds the same user')
  t.equal(s.gw.app.gateway.users.list().filter((u) => u.source === 'store').length, 1)
})

t.test('a provider that is down at first: a clear page, and sign-in works once it is up (client_secret_post)', async (t) => {
  const s = await setup(t, { tokenEndpointAuth: 'client_secret_post' }, false)
  const down = await signIn(s, 'jane')
  t.equal(down.res.status, 502)
  t.match(down.html, /Sign-in with Lab ID is not available right now/)
  s.idp.serve({ clientId: 'chatgate', clientSecret: SECRET, redirectUris: [`${s.gw.url}/auth/callback/lab`], tokenEndpointAuthMethod: 'client_secret_post' })
  const up = await signIn(s, 'jane')
  t.equal(up.res.status, 303)
  t.match(up.browser.cookies(s.gw.url).get('chatgate_session'), /^cgb_/)
})

t.test('a wrong client secret: a clear page for the person, the reason in the log for the admin', async (t) => {
  const s = await setup(t, { clientSecret: 'not-the-secret' })
  const res = await signIn(s, 'jane')
  t.equal(res.res.status, 502)
  t.match(res.html, /Sign-in with Lab ID failed; please try again later/)
  t.match(s.log(), /"problem":"Lab ID refused ChatGate's client registration \(invalid_client\): check clientId, clientSecret/)
  t.notOk(s.log().includes('not-the-secret'), 'the secret is not logged')
})

t.test('provider account names become user names; secrets in URLs are not logged', async (t) => {
  t.equal(userNameFrom('Jane Doe (Lab)'), 'Jane_Doe__Lab_')
  t.equal(userNameFrom('jane.doe@lab.example'), 'jane.doe@lab.example')
  t.equal(withoutSecrets('/auth/callback/lab?code=abc&state=xyz&iss=https%3A%2F%2Fidp'), '/auth/callback/lab?code=[redacted]&state=[redacted]&iss=https%3A%2F%2Fidp')
  t.equal(withoutSecrets('/x?api_key=k1&keep=1#f'), '/x?api_key=[redacted]&keep=1#f')
  t.equal(withoutSecrets('/x?password=p1&pwd=p2&secret=s&keep=1'), '/x?password=[redacted]&pwd=[redacted]&secret=[redacted]&keep=1')
})

t.test('config: providers checked by path', async (t) => {
  const base = { backends: [{ name: 'o', type: 'ollama', url: 'http://127.0.0.1:11434' }] }
  const problems = (providers: unknown[]): string => {
    try {
      validateConfig({ ...base, auth: { signIn: { providers } } })
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  t.match(problems([{ type: 'oidc', name: 'lab', issuer: 'http://idp.lab', clientId: 'c' }]), /auth.signIn.providers\[0\].issuer: is http:\/\/; use https:\/\/, or set allowHttp: true/)
  t.match(problems([{ type: 'oidc', name: 'lab', issuer: 'https://idp.lab', clientId: 'c', scopes: ['email'] }]), /providers\[0\].scopes: must include "openid"/)
  t.match(problems([{ type: 'github', name: 'gh', clientId: 'c', clientSecret: 's' }]), /providers\[0\]: a GitHub provider needs org or allowedEmailDomains/)
  t.match(problems([{ type: 'github', name: 'gh', clientId: 'c', clientSecret: 's', org: 'o' }, { type: 'oidc', name: 'gh', issuer: 'https://i', clientId: 'c' }]), /providers\[1\].name: "gh" is already used by providers\[0\]/)
  t.match(problems([{ type: 'oidc', name: 'Lab ID', issuer: 'https://i', clientId: 'c' }]), /providers\[0\]/)
  t.equal(problems([{ type: 'github', name: 'gh', clientId: 'c', clientSecret: 's', org: 'llmcloud24' }]), '')
  const config = validateConfig({ ...base, auth: { signIn: { providers: [{ type: 'github', name: 'gh', clientId: 'c', clientSecret: 's', org: 'x' }] } } })
  t.match(config.auth.signIn, { newUserRole: 'user', providers: [{ url: 'https://github.com', apiUrl: 'https://api.github.com', allowedEmailDomains: [] }] })
})
