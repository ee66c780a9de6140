import { createHash } from 'node:crypto'
import type { GitHubProviderConfig } from '../../config/sign-in-schema.js'
import { ProviderFailed, SignInRefused, callbackError, tokenError, type Attempt, type ExternalIdentity, type IdentityProvider } from './provider.js'

// GitHub's OAuth web flow (an "OAuth App", as oauth2-proxy's GitHub provider uses), with PKCE, then
// its REST API: who the user is, their verified e-mail, whether they are an active member of the
// organisation. GitHub Enterprise Server works the same at its own URLs.

const TIMEOUT_MS = 10_000

interface GitHubUser { id: number, login: string }
interface GitHubEmail { email: string, primary: boolean, verified: boolean }

const s256 = (verifier: string): string => createHash('sha256').update(verifier).digest('base64url')

export class GitHubProvider implements IdentityProvider {
  readonly name
  readonly title
  readonly issuer

  constructor (private readonly config: GitHubProviderConfig) {
    this.name = config.name
    this.title = config.title ?? 'GitHub'
    this.issuer = config.url
  }

  async authorizationUrl (attempt: Attempt): Promise<string> {
    const url = new URL('/login/oauth/authorize', this.config.url)
    url.search = new URLSearchParams({
      client_id: this.config.clientId,
      redirect_uri: attempt.redirectUri,
      // read:org lets the membership check see private memberships too.
      scope: this.config.org === undefined ? 'read:user user:email' : 'read:user user:email read:org',
      state: attempt.state,
      code_challenge: s256(attempt.verifier),
      code_challenge_method: 'S256',
      allow_signup: 'false',
    }).toString()
    return url.href
  }

  async identity (callback: URL, attempt: Attempt): Promise<ExternalIdentity> {
    const refused = callbackError(callback)
    if (refused !== undefined) throw refused
    if (callback.searchParams.get('state') !== attempt.state) throw new SignInRefused('the sign-in came back with another state; please try again')
    const code = callback.searchParams.get('code')
    if (code === null) throw new SignInRefused(`${this.title} sent no code back; please try again`)
    const token = await this.accessToken(code, attempt)
    const user = await this.api<GitHubUser>(token, '/user')
    if (typeof user?.id !== 'number' || typeof user.login !== 'string') throw new ProviderFailed(`${this.title}: /user answered without id and login`)
    const emails = await this.api<GitHubEmail[]>(token, '/user/emails')
    const email = Array.isArray(emails) ? (emails.find((e) => e.primary && e.verified) ?? emails.find((e) => e.verified))?.email : undefined
    if (this.config.org !== undefined && !await this.activeMember(token, this.config.org)) {
      throw new SignInRefused(`your GitHub account ${user.login} is not a member of the ${this.config.org} organisation`)
    }
    return { subject: String(user.id), name: user.login, ...(email !== undefined && { email }) }
  }

  private async accessToken (code: string, attempt: Attempt): Promise<string> {
    const answer = await this.call(new URL('/login/oauth/access_token', this.config.url), {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        client_id: this.config.clientId,
        client_secret: this.config.clientSecret,
        code,
        redirect_uri: attempt.redirectUri,
        code_verifier: attempt.verifier,
      }).toString(),
    })
    const body = await answer.json().catch(() => undefined) as { access_token?: unknown, error?: string } | undefined
    // GitHub answers a bad code with 200 and {"error": "bad_verification_code", …}.
    if (typeof body?.access_token === 'string') return body.access_token
    if (typeof body?.error === 'string') throw tokenError(this.title, body.error)
    throw new ProviderFailed(`${this.title}: the token endpoint answered ${answer.status} without a token`)
  }

  /** GET /user/memberships/orgs/{org}: 200 with state active for members, 404 (or 403) for others. */
  private async activeMember (token: string, org: string): Promise<boolean> {
    const answer = await this.call(this.apiUrl(`/user/memberships/orgs/${encodeURIComponent(org)}`), { headers: this.apiHeaders(token) })
    if (answer.status === 404 || answer.status === 403) return false
    if (!answer.ok) throw new ProviderFailed(`${this.title}: the membership check answered ${answer.status}`)
    const membership = await answer.json().catch(() => undefined) as { state?: string } | undefined
    return membership?.state === 'active'
  }

  private async api<T> (token: string, path: string): Promise<T | undefined> {
    const answer = await this.call(this.apiUrl(path), { headers: this.apiHeaders(token) })
    if (!answer.ok) throw new ProviderFailed(`${this.title}: ${path} answered ${answer.status}`)
    return await answer.json().catch(() => undefined) as T | undefined
  }

  private apiUrl (path: string): URL {
    // apiUrl may have a path of its own (GitHub Enterprise Server: /api/v3).
    return new URL(this.config.apiUrl.replace(/\/$/, '') + path)
  }

  private apiHeaders (token: string): Record<string, string> {
    // GitHub refuses API calls without a User-Agent.
    return { authorization: `Bearer ${token}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28', 'user-agent': 'ChatGate' }
  }

  private async call (url: URL, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(TIMEOUT_MS) })
    } catch (err) {
      throw new ProviderFailed(`${this.title} (${url.origin}) could not be reached: ${(err as Error).message}`)
    }
  }
}
