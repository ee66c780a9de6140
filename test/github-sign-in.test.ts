// Sign-in with GitHub restricted to an organisation (the course's oauth2-proxy setup), against the
// GitHub emulator: the user is created on the first sign-in, found again later (also after a
// rename at GitHub), and refused when not a member, denied, or when the name is someone else's.
import t, { type Test } from 'tap'
import { OllamaEmulator } from './emulators/ollama.js'
import { GitHubEmulator, type GitHubAccount } from './emulators/github.js'
import { captureLog } from './helpers/accounts.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { startUpstream, type Upstream } from './helpers/proxy-upstream.js'
import { WebClient } from './helpers/web-client.js'

const CLIENT_SECRET = 'github-client-secret-value'

const accounts = (): GitHubAccount[] => [
  { id: 101, login: 'octo', emails: [{ email: 'octo@users.noreply.example', primary: false, verified: true }, { email: 'octo@lab.example', primary: true, verified: true }], orgs: { llmcloud24: 'active' } },
  { id: 102, login: 'pending-pat', emails: [{ email: 'pat@lab.example', primary: true, verified: true }], orgs: { llmcloud24: 'pending' } },
  { id: 103, login: 'outsider', emails: [{ email: 'out@else.example', primary: true, verified: true }], orgs: { otherorg: 'active' } },
  { id: 104, login: 'alice', emails: [{ email: 'alice@else.example', primary: true, verified: true }], orgs: { llmcloud24: 'active' } },
  { id: 105, login: 'unverified', emails: [{ email: 'unv@lab.example', primary: true, verified: false }], orgs: { llmcloud24: 'active' } },
]

interface Setup { gw: Gateway, gh: GitHubEmulator, app: Upstream, log: () => string }

async function setup (t: Test, provider: Record<string, unknown> = {}, signIn: Record<string, unknown> = {}): Promise<Setup> {
  const o = await OllamaEmulator.start()
  t.teardown(() => o.close())
  const gh = await new GitHubEmulator('gh-client-id', CLIENT_SECRET, accounts()).listen()
  t.teardown(() => gh.close())
  const app = await startUpstream(t)
  const log = captureLog()
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], {
    log: { level: 'info' },
    auth: {
      signIn: {
        providers: [{ type: 'github', name: 'github', clientId: 'gh-client-id', clientSecret: CLIENT_SECRET, org: 'llmcloud24', url: gh.url, apiUrl: gh.apiUrl, ...provider }],
        ...signIn,
      },
    },
    proxy: { routes: [{ prefix: '/webui', upstream: app.url, auth: 'login' }] },
  }, { logStream: log.stream })
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password' })
  return { gw, gh, app, log: log.text }
}

/** Visits a guarded page, takes the GitHub button on the login page, and follows the flow back. */
async function signInAs (s: Setup, login: string, browser = new WebClient()): Promise<{ browser: WebClient, res: Response, html: string }> {
  s.gh.signedIn = login
  const first = await browser.follow(`${s.gw.url}/webui/chat?id=7`, (u) => u.pathname === '/auth/sign-in')
  const rd = new URL(first.res.headers.get('location')!, s.gw.url).searchParams.get('rd')!
  const page = await (await browser.fetch(`${s.gw.url}/auth/sign-in?rd=${encodeURIComponent(rd)}`)).text()
  const button = /href="(\/auth\/sign-in\/github\?rd=[^"]+)"/.exec(page)?.[1]
  if (button === undefined) throw new Error('no GitHub button on the login page')
  // Stop at the gateway's answer to the callback: 303 back to the app on success, a page otherwise.
  const { res } = await browser.follow(`${s.gw.url}${button.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c)))}`,
    (u) => u.origin === s.gw.url && !u.pathname.startsWith('/auth/'))
  return { browser, res, html: await res.text() }
}

t.test('a member of the organisation signs in with GitHub, is created with the default role, and reaches the app as themself', async (t) => {
  const s = await setup(t)
  const { browser, res } = await signInAs(s, 'octo')
  t.equal(res.status, 303)
  t.equal(res.headers.get('location'), '/webui/chat?id=7', 'back where the browser started')
  t.match(browser.cookies(s.gw.url).get('chatgate_session'), /^cgb_/)
  t.notOk(browser.cookies(s.gw.url).has('chatgate_signin'), 'the sign-in cookie is cleared')
  t.match(s.gw.app.gateway.users.get('octo'), { name: 'octo', role: 'user', enabled: true, source: 'store', email: 'octo@lab.example' }, 'the primary verified address')

  const page = await browser.fetch(`${s.gw.url}/webui/chat?id=7`)
  const seen = await page.json() as { url: string, headers: Record<string, string> }
  t.equal(seen.url, '/chat?id=7')
  t.match(seen.headers, { 'x-forwarded-user': 'octo', 'x-forwarded-email': 'octo@lab.example', 'x-forwarded-groups': 'user' })

  // What went to GitHub: PKCE, the org scope, a User-Agent on every API call.
  const authorize = browser.hops.find((h) => h.url.startsWith(`${s.gh.url}/login/oauth/authorize`))!
  const query = new URL(authorize.url).searchParams
  t.equal(query.get('code_challenge_method'), 'S256')
  t.match(query.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/)
  t.equal(query.get('scope'), 'read:user user:email read:org')
  t.equal(query.get('redirect_uri'), `${s.gw.url}/auth/callback/github`)
  t.same(s.gh.calls.filter((c) => c.path.startsWith('/api/')).map((c) => c.path), ['/api/v3/user', '/api/v3/user/emails', '/api/v3/user/memberships/orgs/llmcloud24'])

  const log = s.log()
  t.match(log, /"msg":"user created on first sign-in"/)
  for (const secret of [CLIENT_SECRET, query.get('state')!, 'gho_']) t.notOk(log.includes(secret), `never logged: ${secret.slice(0, 8)}…`)
  t.notMatch(log, /code=[0-9a-f]{20}/, 'the code is not logged')
})

t.test('a later sign-in finds the same user, also after a rename at GitHub; the new role setting does not change it', async (t) => {
  const s = await setup(t, {}, { newUserRole: 'admin' })
  await signInAs(s, 'octo')
  t.equal(s.gw.app.gateway.users.get('octo')?.role, 'admin', 'newUserRole applies to created users')
  s.gw.app.gateway.users.update('octo', { role: 'user' })
  // GitHub account 101 is now called "octo-renamed": same id, same ChatGate user.
  s.gh.setAccount({ ...accounts()[0]!, login: 'octo-renamed' })
  const { res } = await signInAs(s, 'octo-renamed')
  t.equal(res.status, 303)
  t.equal(s.gw.app.gateway.users.get('octo-renamed'), undefined, 'no second user')
  t.equal(s.gw.app.gateway.users.get('octo')?.role, 'user', 'the role an admin set stays')
  t.match(s.log(), /"user":"octo","created":false,"msg":"signed in through provider"/)
})

t.test('refused: not a member, a pending member, denied at GitHub, a disabled user', async (t) => {
  const s = await setup(t)
  for (const [login, problem] of [['outsider', /not a member of the llmcloud24 organisation/], ['pending-pat', /not a member/]] as const) {
    const { res, html, browser } = await signInAs(s, login)
    t.equal(res.status, 403, login)
    t.match(html, problem)
    t.notOk(browser.cookies(s.gw.url).has('chatgate_session'), 'no session')
    t.equal(s.gw.app.gateway.users.get(login), undefined, 'no user created')
  }
  s.gh.deny = true
  const denied = await signInAs(s, 'octo')
  t.equal(denied.res.status, 403)
  t.match(denied.html, /refused the sign-in: The user has denied your application access/)
  s.gh.deny = false
  await signInAs(s, 'octo')
  s.gw.app.gateway.users.setEnabled('octo', false)
  const disabled = await signInAs(s, 'octo')
  t.equal(disabled.res.status, 403)
  t.match(disabled.html, /account octo is disabled/)
})

t.test('a GitHub name that belongs to a local user is not taken over', async (t) => {
  const s = await setup(t)
  const { res, html, browser } = await signInAs(s, 'alice')
  t.equal(res.status, 403)
  t.match(html, /user name alice already belongs to another ChatGate account/)
  t.notOk(browser.cookies(s.gw.url).has('chatgate_session'))
  t.equal(s.gw.app.gateway.users.get('alice')?.email, undefined, 'the local alice is unchanged')
})

t.test('allowed e-mail domains: only a verified address in one of them passes', async (t) => {
  const s = await setup(t, { org: undefined, allowedEmailDomains: ['lab.example'] })
  t.equal((await signInAs(s, 'octo')).res.status, 303, 'octo@lab.example')
  const other = await signInAs(s, 'outsider')
  t.equal(other.res.status, 403)
  t.match(other.html, /addresses at else.example may not sign in here/)
  const unverified = await signInAs(s, 'unverified')
  t.equal(unverified.res.status, 403)
  t.match(unverified.html, /no verified e-mail address/)
  const authorize = new URL(other.browser.hops.find((h) => h.url.includes('/login/oauth/authorize'))!.url)
  t.equal(authorize.searchParams.get('scope'), 'read:user user:email', 'no org scope without an org')
})

t.test('a callback without its sign-in cookie, with another state, or a forged code gets nowhere', async (t) => {
  const s = await setup(t)
  s.gh.signedIn = 'octo'
  const browser = new WebClient()
  // The flow up to GitHub's redirect back, not followed.
  const toGitHub = await browser.fetch(`${s.gw.url}/auth/sign-in/github?rd=/webui/`)
  t.equal(toGitHub.status, 302)
  t.match(toGitHub.headers.get('set-cookie'), /chatgate_signin=[^;]+; Max-Age=600; Path=\/auth\/callback; HttpOnly; SameSite=Lax/)
  const back = new URL((await browser.fetch(toGitHub.headers.get('location')!)).headers.get('location')!)

  const stranger = new WebClient()
  const noCookie = await stranger.fetch(back.href)
  t.equal(noCookie.status, 400)
  t.match(await noCookie.text(), /expired or was started in another browser/)

  const otherState = new URL(back)
  otherState.searchParams.set('state', 'forged')
  const forged = await browser.fetch(otherState.href)
  t.equal(forged.status, 403)
  t.match(await forged.text(), /another state/)
  t.equal(s.gh.calls.filter((c) => c.path === '/login/oauth/access_token').length, 0, 'no code was exchanged')

  // The sign-in cookie is used up: the genuine callback now fails too.
  const replay = await browser.fetch(back.href)
  t.equal(replay.status, 400)

  const unknown = await browser.fetch(`${s.gw.url}/auth/sign-in/gitlab?rd=/`)
  t.equal(unknown.status, 404)
  t.match(await unknown.text(), /no such way to sign in/)
})

t.test('a wrong client secret and an unreachable GitHub: a clear page, nothing crashes', async (t) => {
  const wrong = await setup(t, { clientSecret: 'not-the-secret' })
  const bad = await signInAs(wrong, 'octo')
  t.equal(bad.res.status, 502)
  t.match(bad.html, /Sign-in with GitHub failed; please try again later/)
  t.match(wrong.log(), /"problem":"GitHub refused ChatGate's client registration \(incorrect_client_credentials\)/)

  const s = await setup(t)
  await s.gh.close()
  const browser = new WebClient()
  // The start needs nothing from GitHub; the way back does.
  const start = await browser.fetch(`${s.gw.url}/auth/sign-in/github?rd=/`)
  const state = new URL(start.headers.get('location')!).searchParams.get('state')!
  const res = await browser.fetch(`${s.gw.url}/auth/callback/github?code=abc&state=${state}`)
  t.equal(res.status, 502)
  t.match(await res.text(), /Sign-in with GitHub failed; please try again later/)
  t.match(s.log(), /"msg":"identity provider failed"/)
  t.equal((await fetch(`${s.gw.url}/healthz`)).status, 200, 'still serving')
})

t.test('the login page offers the provider', async (t) => {
  const s = await setup(t, { title: 'GitHub (llmcloud24)' })
  const html = await (await fetch(`${s.gw.url}/auth/sign-in?rd=%2Fwebui%2F`)).text()
  t.match(html, /<a class="provider" href="\/auth\/sign-in\/github\?rd=%2Fwebui%2F">Sign in with GitHub \(llmcloud24\)<\/a>/)
})
