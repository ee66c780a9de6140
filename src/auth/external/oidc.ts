import * as oidc from 'openid-client'
import type { OidcProviderConfig } from '../../config/sign-in-schema.js'
import { ProviderFailed, SignInRefused, callbackError, tokenError, type Attempt, type ExternalIdentity, type IdentityProvider } from './provider.js'

// OpenID Connect, authorization code flow with PKCE (openid-client). The provider's metadata is
// read on the first sign-in, not at start: ChatGate starts while the provider is down, and a
// failed discovery is tried again on the next sign-in.

const TIMEOUT_S = 10

const stringClaim = (value: unknown): string | undefined => typeof value === 'string' && value !== '' ? value : undefined

function groupsOf (value: unknown): string[] {
  if (typeof value === 'string') return [value]
  return Array.isArray(value) ? value.filter((g): g is string => typeof g === 'string') : []
}

export class OidcProvider implements IdentityProvider {
  readonly name
  readonly title
  readonly issuer
  private discovered: Promise<oidc.Configuration> | undefined

  constructor (private readonly config: OidcProviderConfig) {
    this.name = config.name
    this.title = config.title ?? config.name
    this.issuer = config.issuer
  }

  async authorizationUrl (attempt: Attempt): Promise<string> {
    const server = await this.server()
    return oidc.buildAuthorizationUrl(server, {
      redirect_uri: attempt.redirectUri,
      scope: this.config.scopes.join(' '),
      response_type: 'code',
      state: attempt.state,
      nonce: attempt.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(attempt.verifier),
      code_challenge_method: 'S256',
    }).href
  }

  async identity (callback: URL, attempt: Attempt): Promise<ExternalIdentity> {
    const refused = callbackError(callback)
    if (refused !== undefined) throw refused
    const server = await this.server()
    let claims: Record<string, unknown>
    try {
      const tokens = await oidc.authorizationCodeGrant(server, callback, {
        pkceCodeVerifier: attempt.verifier,
        expectedState: attempt.state,
        expectedNonce: attempt.nonce,
        idTokenExpected: true,
      })
      claims = { ...tokens.claims()! }
      // Many providers put e-mail and groups only in the userinfo answer.
      if (server.serverMetadata().userinfo_endpoint !== undefined) {
        claims = { ...claims, ...await oidc.fetchUserInfo(server, tokens.access_token, claims.sub as string) }
      }
    } catch (err) {
      // An OAuth error from the provider (a used code, a wrong secret…), or a check of ours failed.
      const code = (err as { error?: unknown }).error
      if (typeof code === 'string') throw tokenError(this.title, code)
      if (err instanceof oidc.WWWAuthenticateChallengeError) throw tokenError(this.title, err.cause[0]?.parameters.error ?? 'invalid_client')
      throw new ProviderFailed(`${this.title}: ${(err as Error).message}`)
    }
    return this.admit(claims)
  }

  private admit (claims: Record<string, unknown>): ExternalIdentity {
    const { config } = this
    const verified = config.allowUnverifiedEmail || claims.email_verified === true || claims.email_verified === 'true'
    const email = verified ? stringClaim(claims.email) : undefined
    if (config.allowedGroups.length > 0) {
      const groups = groupsOf(claims[config.groupsClaim])
      if (!groups.some((g) => config.allowedGroups.includes(g))) {
        throw new SignInRefused(`your ${this.title} account is in none of the groups allowed here`)
      }
    }
    const subject = claims.sub as string
    const name = stringClaim(claims[config.usernameClaim]) ?? email ?? subject
    return { subject, name, ...(email !== undefined && { email }) }
  }

  private async server (): Promise<oidc.Configuration> {
    this.discovered ??= this.discover()
    try {
      return await this.discovered
    } catch (err) {
      this.discovered = undefined
      throw new ProviderFailed(`${this.title} (${this.config.issuer}) could not be reached: ${(err as Error).message}`)
    }
  }

  private discover (): Promise<oidc.Configuration> {
    const { config } = this
    const auth = config.clientSecret === undefined
      ? oidc.None()
      : config.tokenEndpointAuth === 'client_secret_post' ? oidc.ClientSecretPost(config.clientSecret) : oidc.ClientSecretBasic(config.clientSecret)
    return oidc.discovery(new URL(config.issuer), config.clientId, undefined, auth, {
      timeout: TIMEOUT_S,
      ...(config.allowHttp && { execute: [oidc.allowInsecureRequests] }),
    })
  }
}
