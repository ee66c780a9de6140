/**
 * A real OpenID Connect provider (npm `oidc-provider` 9, panva) on http://127.0.0.1:<port 0>, for
 * tests of OIDC sign-in (authorization code + PKCE S256, required here for the confidential client too). One
 * confidential client, in-memory storage, its development-only signing keys, consent skipped.
 *
 * Login is oidc-provider's built-in dev interaction, at GET /interaction/<uid> (a page titled
 * "Sign-in"): `<form method="post" action="/interaction/<uid>">` with a hidden `prompt=login`, a
 * text input `name="login"` (placeholder "Enter any login"), a password input `name="password"`
 * (placeholder "and password"; `required` but never checked) and `<button type="submit"
 * class="login login-submit">Sign-in</button>`; a "[ Cancel ]" link aborts (access_denied). The
 * login typed in is the account id, i.e. `sub`. A login that is not in the accounts table is
 * accepted by the form but findAccount finds nothing, so the provider shows the login page again.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Configuration } from 'oidc-provider'
import { WebClient } from './web-client.js'

export interface OidcAccount { sub: string, email?: string, email_verified?: boolean, groups?: string[], preferred_username?: string, name?: string }

export interface OidcProviderHarness {
  issuer: string
  /** Registers the one confidential client and starts answering; call after the relying party's callback URL is known. */
  serve (client: { clientId: string, clientSecret: string, redirectUris: string[], tokenEndpointAuthMethod?: 'client_secret_post' | 'client_secret_basic' }): void
  close (): Promise<void>
}

// oidc-provider console.warn/info()s "oidc-provider WARNING/NOTICE: ..." lines (unsupported
// runtime on Node 20, dev interactions, dev keys, in-memory adapter): drop only those.
// Installed before the dynamic import below, since one is printed while the module loads.
const OIDC_NOISE = /^(\x1b\[[\d;]*m)?oidc-provider (WARNING|NOTICE):/
for (const level of ['warn', 'info'] as const) {
  const original = console[level]
  console[level] = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && OIDC_NOISE.test(args[0])) return
    original.apply(console, args)
  }
}

export async function startOidcProvider (t: { teardown: (fn: () => unknown) => void }, accounts: OidcAccount[]): Promise<OidcProviderHarness> {
  const { default: Provider } = await import('oidc-provider')
  const byId = new Map(accounts.map((account) => [account.sub, account]))
  let handler: ((req: IncomingMessage, res: ServerResponse) => unknown) | undefined
  const server = createServer((req, res) => {
    if (handler !== undefined) return void handler(req, res)
    res.writeHead(503, { 'content-type': 'text/plain' }).end('OIDC provider not serving yet\n')
  })
  // Listen first: the issuer must contain the port.
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const config = (client: Parameters<OidcProviderHarness['serve']>[0]): Configuration => ({
    clients: [{
      client_id: client.clientId,
      client_secret: client.clientSecret,
      redirect_uris: client.redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // oidc-provider accepts only the registered method; openid-client 6 uses client_secret_post
      // when given a secret string, so that is the default here.
      token_endpoint_auth_method: client.tokenEndpointAuthMethod ?? 'client_secret_post'
    }],
    cookies: { keys: ['chatgate-test-cookie-key-1', 'chatgate-test-cookie-key-2'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups']
    },
    // oidc-provider only requires PKCE of public clients by default; ChatGate must always send it.
    pkce: { required: () => true },
    // Scope-requested claims also go into the ID token, not only to the userinfo endpoint.
    conformIdTokenClaims: false,
    findAccount: (_ctx, id) => {
      const account = byId.get(id)
      return account === undefined ? undefined : { accountId: id, claims: () => ({ ...account }) }
    },
    // Grants every requested scope and claim, so the consent prompt never appears.
    loadExistingGrant: async (ctx) => {
      const { oidc } = ctx
      if (oidc.client === undefined || oidc.session?.accountId === undefined) return undefined
      const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId)
      const grant = (grantId !== undefined ? await oidc.provider.Grant.find(grantId) : undefined) ??
        new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId })
      grant.addOIDCScope(oidc.requestParamOIDCScopes)
      grant.addOIDCClaims(oidc.requestParamClaims)
      await grant.save()
      return grant
    },
    ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 3600, Session: 3600, Grant: 3600 },
    renderError: (ctx, out) => { ctx.type = 'text/plain'; ctx.body = `${out.error}: ${out.error_description ?? ''}\n` }
  })

  let closed: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections() // keep-alive sockets (test fetches, browsers) would hold close() open
    })
    return await closed
  }
  t.teardown(close)

  return {
    issuer,
    serve (client) {
      if (handler !== undefined) throw new Error('serve() was already called')
      const provider = new Provider(issuer, config(client))
      // The dev login page @imports a Google Fonts stylesheet: strip it so a browser never leaves loopback.
      provider.use(async (ctx, next) => {
        await next()
        if (typeof ctx.body === 'string' && ctx.type === 'text/html') ctx.body = ctx.body.replace(/@import url\(https:[^)]*\);/g, '')
      })
      handler = provider.callback()
    },
    close
  }
}

/**
 * Drives the dev login without a browser: follows `authorizationUrl`, posts the login form as `sub`
 * (any password), and returns the redirect to the client's redirect_uri, not requested: feed it to
 * openid-client's authorizationCodeGrant, or to the client with the same `browser`.
 */
export async function signInAtProvider (authorizationUrl: string, sub: string, browser = new WebClient()): Promise<string> {
  const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri')
  if (redirectUri === null) throw new Error('authorization URL has no redirect_uri')
  const target = new URL(redirectUri)
  const toClient = (u: URL): boolean => u.origin === target.origin && u.pathname === target.pathname
  const login = await browser.follow(authorizationUrl, toClient)
  if (login.res.status !== 200) return new URL(login.res.headers.get('location')!, login.url).href
  const html = await login.res.text()
  const action = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html)?.[1]
  if (action === undefined || !html.includes('name="login"')) throw new Error(`no login form at ${login.url}: ${html.slice(0, 300)}`)
  const posted = await browser.fetch(new URL(action.replaceAll('&amp;', '&'), login.url).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ prompt: 'login', login: sub, password: 'anything' }).toString(),
  })
  const next = posted.headers.get('location')
  if (next === null) throw new Error(`login form answered ${posted.status} for ${sub}`)
  const back = await browser.follow(new URL(next, login.url).href, toClient)
  const location = back.res.headers.get('location')
  if (location === null) throw new Error(`login page shown again (unknown sub?) signing in as ${sub}`)
  return new URL(location, back.url).href
}
