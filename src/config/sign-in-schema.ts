import { Type, type Static } from '@sinclair/typebox'

// Sign-in with an external identity provider on the login page (the oauth2-proxy role): OpenID
// Connect (Keycloak, Authentik, Entra ID, Google…) and GitHub. `signInProblems` checks what needs
// two fields or two providers at once.

const Url = (description: string, def?: string) => Type.String({ pattern: '^https?://[^\\s/?#@]+(/[^\\s?#]*)?$', description, ...(def !== undefined && { default: def }) })
const Domain = Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$', description: 'a domain like example.org' })

const common = {
  name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]*$', description: 'lower-case letters, digits and -: in its URLs, /auth/sign-in/<name> and the callback /auth/callback/<name>' }),
  title: Type.Optional(Type.String({ minLength: 1, description: 'the button on the login page says "Sign in with <title>"' })),
  clientId: Type.String({ minLength: 1 }),
  allowedEmailDomains: Type.Array(Domain, { default: [], description: 'when set, only users whose verified e-mail address is in one of these domains may sign in' }),
  redirectUrl: Type.Optional(Url('the callback URL registered at the provider, https://<host>/auth/callback/<name>; by default built from the Host of the request')),
}

export const OidcProviderSchema = Type.Object({
  type: Type.Literal('oidc'),
  ...common,
  issuer: Url('the issuer URL; its /.well-known/openid-configuration is read on the first sign-in'),
  clientSecret: Type.Optional(Type.String({ minLength: 1, description: 'absent for a public client (PKCE alone)' })),
  tokenEndpointAuth: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], { default: 'client_secret_basic', description: 'how the client secret is sent to the token endpoint, as registered at the provider' }),
  scopes: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$' }), { default: ['openid', 'email', 'profile'], description: 'requested scopes; add the one that carries groups if allowedGroups is set (often "groups")' }),
  usernameClaim: Type.String({ minLength: 1, default: 'preferred_username', description: 'the claim that names the ChatGate user (then e-mail, then sub, when it is absent)' }),
  groupsClaim: Type.String({ minLength: 1, default: 'groups' }),
  allowedGroups: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'when set, only members of one of these groups may sign in' }),
  allowUnverifiedEmail: Type.Boolean({ default: false, description: 'take the e-mail address even without email_verified: true (for providers that never send it)' }),
  allowHttp: Type.Boolean({ default: false, description: 'allow an http:// issuer (only on a network you trust: tokens then travel in clear)' }),
}, { additionalProperties: false })

export const GitHubProviderSchema = Type.Object({
  type: Type.Literal('github'),
  ...common,
  clientSecret: Type.String({ minLength: 1 }),
  org: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$', description: 'only active members of this GitHub organisation may sign in' })),
  url: Url('GitHub, or a GitHub Enterprise Server', 'https://github.com'),
  apiUrl: Url('its REST API (GitHub Enterprise Server: https://<host>/api/v3)', 'https://api.github.com'),
}, { additionalProperties: false })

export const SignInSchema = Type.Object({
  providers: Type.Array(Type.Union([OidcProviderSchema, GitHubProviderSchema]), { default: [], description: 'external identity providers offered on the login page' }),
  newUserRole: Type.Union([Type.Literal('user'), Type.Literal('admin')], { default: 'user', description: 'the role of users created on their first sign-in through a provider' }),
}, { additionalProperties: false, default: {} })

export type SignInConfig = Static<typeof SignInSchema>
export type OidcProviderConfig = Static<typeof OidcProviderSchema>
export type GitHubProviderConfig = Static<typeof GitHubProviderSchema>
export type ProviderConfig = OidcProviderConfig | GitHubProviderConfig

export function signInProblems (signIn: SignInConfig): string[] {
  const problems: string[] = []
  const seen = new Map<string, number>()
  signIn.providers.forEach((p, i) => {
    const where = `auth.signIn.providers[${i}]`
    if (seen.has(p.name)) problems.push(`${where}.name: "${p.name}" is already used by providers[${seen.get(p.name)}]`)
    seen.set(p.name, i)
    if (p.type === 'oidc') {
      if (p.issuer.startsWith('http://') && !p.allowHttp) problems.push(`${where}.issuer: is http://; use https://, or set allowHttp: true on a network you trust`)
      if (!p.scopes.includes('openid')) problems.push(`${where}.scopes: must include "openid"`)
    } else if (p.org === undefined && p.allowedEmailDomains.length === 0) {
      // Anyone on GitHub could sign in otherwise.
      problems.push(`${where}: a GitHub provider needs org or allowedEmailDomains, or every GitHub account could sign in`)
    }
  })
  return problems
}
