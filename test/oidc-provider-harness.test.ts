// Proof that test/helpers/oidc-provider.ts runs a real OpenID Connect provider that openid-client 6
// (ChatGate's OIDC client) completes authorization code + PKCE against: the login is driven over
// plain HTTP with signInAtProvider, the redirect to the client is captured (its port is never
// listened on) and exchanged, and the ID token and userinfo carry the account's claims.
import t from 'tap'
import * as client from 'openid-client'
import { signInAtProvider, startOidcProvider, type OidcAccount } from './helpers/oidc-provider.js'

const alice: OidcAccount = { sub: 'alice', email: 'alice@example.test', email_verified: true, groups: ['staff', 'admins'], preferred_username: 'alice', name: 'Alice Example' }
const bob: OidcAccount = { sub: 'bob', email: 'bob@example.test', groups: [] }
const registration = { clientId: 'chatgate', clientSecret: 'chatgate-test-secret', redirectUris: ['http://127.0.0.1:9/cb'] }

async function authorizationRequest (config: client.Configuration, extra: Record<string, string> = {}): Promise<{ url: URL, verifier: string, state: string, nonce: string }> {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: registration.redirectUris[0] ?? '',
    scope: 'openid email profile groups',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra
  })
  return { url, verifier, state, nonce }
}

t.test('answers 503 until serve(), then discovery works', async (t) => {
  const op = await startOidcProvider(t, [alice])
  t.match(op.issuer, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal((await fetch(`${op.issuer}/.well-known/openid-configuration`)).status, 503)
  op.serve(registration)
  const config = await client.discovery(new URL(op.issuer), registration.clientId, registration.clientSecret, undefined, { execute: [client.allowInsecureRequests] })
  const meta = config.serverMetadata()
  t.equal(meta.issuer, op.issuer)
  t.ok(meta.scopes_supported?.includes('groups'), 'groups scope advertised')
  t.ok(meta.claims_supported?.includes('groups'), 'groups claim advertised')
  t.same(meta.code_challenge_methods_supported, ['S256'])
  t.throws(() => op.serve(registration))
})

t.test('authorization code + PKCE with openid-client: ID token and userinfo carry the claims', async (t) => {
  const op = await startOidcProvider(t, [alice, bob])
  op.serve(registration)
  const config = await client.discovery(new URL(op.issuer), registration.clientId, registration.clientSecret, undefined, { execute: [client.allowInsecureRequests] })
  for (const account of [alice, bob]) {
    const { url, verifier, state, nonce } = await authorizationRequest(config)
    const callback = await signInAtProvider(url.href, account.sub)
    t.match(callback, /^http:\/\/127\.0\.0\.1:9\/cb\?code=/)
    const tokens = await client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce })
    const claims = tokens.claims()
    t.match(claims, { sub: account.sub, email: account.email, groups: account.groups, nonce, iss: op.issuer, aud: registration.clientId }, `${account.sub}: ID token claims`)
    if (account === alice) t.match(claims, { email_verified: true, preferred_username: 'alice', name: 'Alice Example' })
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, account.sub)
    t.match(userinfo, { sub: account.sub, email: account.email, groups: account.groups }, `${account.sub}: userinfo`)
  }
})

t.test('the dev login page, PKCE enforcement and unknown logins', async (t) => {
  const op = await startOidcProvider(t, [alice])
  op.serve(registration)
  const config = await client.discovery(new URL(op.issuer), registration.clientId, registration.clientSecret, undefined, { execute: [client.allowInsecureRequests] })

  const { url } = await authorizationRequest(config)
  const first = await fetch(url, { redirect: 'manual' })
  t.equal(first.status, 303)
  const page = await fetch(new URL(first.headers.get('location') ?? '', op.issuer), { headers: { cookie: first.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') } })
  const html = await page.text()
  t.equal(page.status, 200)
  for (const needle of ['<input type="hidden" name="prompt" value="login"/>', 'name="login"', 'name="password"', '<button type="submit" class="login login-submit">Sign-in</button>']) {
    t.ok(html.includes(needle), `login page has ${needle}`)
  }
  t.notOk(html.includes('fonts.googleapis.com'), 'no external stylesheet')

  const noPkce = await authorizationRequest(config)
  noPkce.url.searchParams.delete('code_challenge')
  noPkce.url.searchParams.delete('code_challenge_method')
  const refused = new URL((await fetch(noPkce.url, { redirect: 'manual' })).headers.get('location') ?? '', op.issuer)
  t.equal(refused.searchParams.get('error'), 'invalid_request', 'PKCE is required')
  t.match(refused.href, /^http:\/\/127\.0\.0\.1:9\/cb\?/)

  const { url: again } = await authorizationRequest(config)
  await t.rejects(signInAtProvider(again.href, 'mallory'), /login page shown again/)
})

t.test('close() ends keep-alive connections and is idempotent', async (t) => {
  const op = await startOidcProvider(t, [alice])
  op.serve(registration)
  t.equal((await fetch(`${op.issuer}/.well-known/openid-configuration`)).status, 200)
  await op.close()
  await op.close()
  await t.rejects(fetch(`${op.issuer}/.well-known/openid-configuration`))
})
