// What ChatGate needs from an external identity provider (OpenID Connect, GitHub): where to send
// the browser, and who came back. Restrictions the provider alone can check (organisation, groups,
// verified e-mail) are checked by it; the rest (e-mail domains, users) by ExternalSignIn.

/** The secrets of one sign-in in progress, kept in the browser's sign-in cookie until the callback. */
export interface Attempt {
  state: string
  nonce: string
  /** The PKCE code verifier (RFC 7636): only its S256 hash travels in the authorization URL. */
  verifier: string
  /** The callback URL sent with the authorization request: the code exchange must name it again. */
  redirectUri: string
}

export interface ExternalIdentity {
  /** Stable at the provider (OIDC `sub`, GitHub's numeric user id), unlike names. */
  subject: string
  /** What the ChatGate user is called when created on the first sign-in. */
  name: string
  /** Only a verified address. */
  email?: string
}

/** A refusal the person signing in is told about on the login page (HTTP 403). */
export class SignInRefused extends Error {}

/** The provider could not be reached or answered nonsense (HTTP 502 on the login page). */
export class ProviderFailed extends Error {}

export interface IdentityProvider {
  readonly name: string
  /** On the login page's button. */
  readonly title: string
  /** Whose subjects these are (the issuer URL): a subject is unique only within it. */
  readonly issuer: string
  authorizationUrl (attempt: Attempt): Promise<string>
  /** `callback` is the URL the browser came back to (its query holds the code, state and errors). */
  identity (callback: URL, attempt: Attempt): Promise<ExternalIdentity>
}

// OAuth error codes that mean ChatGate's own registration is wrong (client id or secret, callback
// URL): nothing the person signing in can fix, so the admin learns it from the log.
const CLIENT_PROBLEMS = new Set(['invalid_client', 'unauthorized_client', 'incorrect_client_credentials', 'redirect_uri_mismatch'])

/** The error for an OAuth error code from the token endpoint. */
export function tokenError (title: string, code: string): SignInRefused | ProviderFailed {
  return CLIENT_PROBLEMS.has(code)
    ? new ProviderFailed(`${title} refused ChatGate's client registration (${code}): check clientId, clientSecret and the callback URL registered there`)
    : new SignInRefused(`${title} did not accept the sign-in (${code}); please try again`)
}

/** The error the provider sent back instead of a code (`?error=access_denied&error_description=…`). */
export function callbackError (callback: URL): SignInRefused | undefined {
  const error = callback.searchParams.get('error')
  if (error === null) return undefined
  const description = callback.searchParams.get('error_description')
  return new SignInRefused(`the provider refused the sign-in: ${description ?? error}`.slice(0, 300))
}
