// GitHub's OAuth web flow and the few REST calls a sign-in needs, as github.com answers them
// (docs.github.com: "Authorizing OAuth apps", "Troubleshooting OAuth app access token request
// errors", REST "Users", "Emails", "Organization members"). The authorize page is skipped: the
// emulator approves at once for whoever `signedIn` names, or denies when `deny` is set. The REST
// API lives under /api/v3, as on GitHub Enterprise Server, so a provider's apiUrl path is used.
import { createHash, randomBytes } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface GitHubAccount {
  id: number
  login: string
  emails: Array<{ email: string, primary: boolean, verified: boolean }>
  /** Organisation login → membership state. */
  orgs?: Record<string, 'active' | 'pending'>
}

interface Grant { login: string, clientId: string, redirectUri: string, challenge?: string, scope: string }

const DOCS = 'https://docs.github.com'
const tokenError = (error: string, description: string, anchor: string): object =>
  ({ error, error_description: description, error_uri: `${DOCS}/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#${anchor}` })

export class GitHubEmulator {
  /** The account "logged in at GitHub" that approves the next authorization. */
  signedIn = ''
  deny = false
  readonly calls: Array<{ method: string, path: string, headers: http.IncomingHttpHeaders }> = []
  private readonly accounts = new Map<string, GitHubAccount>()
  private readonly codes = new Map<string, Grant>()
  private readonly tokens = new Map<string, Grant>()
  private readonly server = http.createServer((req, res) => { this.answer(req, res).catch(() => res.destroy()) })
  private base = ''

  constructor (readonly clientId: string, readonly clientSecret: string, accounts: GitHubAccount[]) {
    for (const a of accounts) this.accounts.set(a.login, a)
  }

  /** Adds an account, or changes one (a rename keeps the id). */
  setAccount (account: GitHubAccount): void {
    this.accounts.set(account.login, account)
  }

  get url (): string { return this.base }
  get apiUrl (): string { return `${this.base}/api/v3` }

  async listen (): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async answer (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.base)
    this.calls.push({ method: req.method ?? 'GET', path: url.pathname, headers: req.headers })
    let body = ''
    for await (const chunk of req) body += String(chunk)
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') return this.authorize(url, res)
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') return this.accessToken(req, body, res)
    if (req.method === 'GET' && url.pathname.startsWith('/api/v3/')) return this.api(req, url.pathname.slice('/api/v3'.length), res)
    send(res, 404, { message: 'Not Found', documentation_url: `${DOCS}/rest`, status: '404' })
  }

  private authorize (url: URL, res: ServerResponse): void {
    const q = url.searchParams
    const redirectUri = q.get('redirect_uri') ?? ''
    const state = q.get('state') ?? ''
    // github.com shows an error page for an unknown client; no redirect happens.
    if (q.get('client_id') !== this.clientId) return send(res, 404, 'Not Found', 'text/html')
    const back = new URL(redirectUri)
    if (this.deny) {
      back.search = new URLSearchParams({
        error: 'access_denied',
        error_description: 'The user has denied your application access.',
        error_uri: `${DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied`,
        state,
      }).toString()
    } else {
      const code = randomBytes(10).toString('hex')
      const challenge = q.get('code_challenge') ?? undefined
      this.codes.set(code, { login: this.signedIn, clientId: this.clientId, redirectUri, scope: q.get('scope') ?? '', ...(challenge !== undefined && { challenge }) })
      back.search = new URLSearchParams({ code, state }).toString()
    }
    res.writeHead(302, { location: back.href }).end()
  }

  private accessToken (req: IncomingMessage, body: string, res: ServerResponse): void {
    const form = (req.headers['content-type'] ?? '').includes('json')
      ? new URLSearchParams(JSON.parse(body) as Record<string, string>)
      : new URLSearchParams(body)
    // Answered 200 even for errors; JSON only when asked for (form-encoded otherwise).
    const reply = (value: object): void => {
      if ((req.headers.accept ?? '').includes('application/json')) return send(res, 200, value)
      send(res, 200, new URLSearchParams(value as Record<string, string>).toString(), 'application/x-www-form-urlencoded; charset=utf-8')
    }
    if (form.get('client_id') !== this.clientId || form.get('client_secret') !== this.clientSecret) {
      return reply(tokenError('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.', 'incorrect-client-credentials'))
    }
    const code = form.get('code') ?? ''
    const grant = this.codes.get(code)
    this.codes.delete(code)
    if (grant === undefined) return reply(tokenError('bad_verification_code', 'The code passed is incorrect or expired.', 'bad-verification-code'))
    if (form.get('redirect_uri') !== null && form.get('redirect_uri') !== grant.redirectUri) {
      return reply(tokenError('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.', 'redirect-uri-mismatch'))
    }
    const verifier = form.get('code_verifier')
    if (grant.challenge !== undefined && (verifier === null || createHash('sha256').update(verifier).digest('base64url') !== grant.challenge)) {
      return reply(tokenError('bad_verification_code', 'The code passed is incorrect or expired.', 'bad-verification-code'))
    }
    const token = `gho_${randomBytes(18).toString('base64url')}`
    this.tokens.set(token, grant)
    reply({ access_token: token, token_type: 'bearer', scope: grant.scope.split(' ').sort().join(',') })
  }

  private api (req: IncomingMessage, path: string, res: ServerResponse): void {
    if (req.headers['user-agent'] === undefined) {
      return send(res, 403, 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n', 'text/plain')
    }
    const token = /^(?:Bearer|token) (.+)$/i.exec(req.headers.authorization ?? '')?.[1]
    const grant = token === undefined ? undefined : this.tokens.get(token)
    const account = grant === undefined ? undefined : this.accounts.get(grant.login)
    if (grant === undefined || account === undefined) return send(res, 401, { message: 'Bad credentials', documentation_url: `${DOCS}/rest`, status: '401' })
    const scopes = grant.scope.split(' ')
    const notFound = (): void => send(res, 404, { message: 'Not Found', documentation_url: `${DOCS}/rest`, status: '404' })
    if (path === '/user') {
      return send(res, 200, { login: account.login, id: account.id, node_id: `U_${account.id}`, type: 'User', site_admin: false, name: null, email: null })
    }
    if (path === '/user/emails') {
      if (!scopes.includes('user:email') && !scopes.includes('user')) return notFound()
      return send(res, 200, account.emails.map((e) => ({ ...e, visibility: e.primary ? 'private' : null })))
    }
    const org = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(path)?.[1]
    if (org !== undefined) {
      const state = account.orgs?.[decodeURIComponent(org)]
      // Without read:org GitHub hides private memberships: the same 404 as for no membership.
      if (state === undefined || !scopes.includes('read:org')) return notFound()
      return send(res, 200, { state, role: 'member', organization: { login: org }, user: { login: account.login, id: account.id } })
    }
    notFound()
  }
}

function send (res: ServerResponse, status: number, body: object | string, type = 'application/json; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type }).end(typeof body === 'string' ? body : JSON.stringify(body))
}
