import type { ProviderConfig, SignInConfig } from '../../config/sign-in-schema.js'
import type { Db } from '../../store/database.js'
import { EMAIL_PATTERN, type Users } from '../users.js'
import { GitHubProvider } from './github.js'
import { OidcProvider } from './oidc.js'
import { SignInRefused, type ExternalIdentity, type IdentityProvider } from './provider.js'

// Who may sign in through a provider, and as which ChatGate user. An account at a provider
// (issuer + subject) is linked to one user: on the first sign-in a store user is created with the
// configured role, named after the account; later sign-ins find the same user even if the account
// was renamed. A name already held by another ChatGate user is never taken over.

const EMAIL = new RegExp(EMAIL_PATTERN)

/** A provider's account name as a ChatGate user name (letters, digits and . _ @ -). */
export const userNameFrom = (name: string): string => name.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 100)

export interface Admitted { user: string, created: boolean }

export class ExternalSignIn {
  readonly providers: ReadonlyMap<string, IdentityProvider>
  private readonly configs: ReadonlyMap<string, ProviderConfig>
  private readonly linked
  private readonly link
  private readonly unlink
  private readonly touch

  constructor (private readonly db: Db, private readonly users: Users, private readonly config: SignInConfig) {
    this.providers = new Map(config.providers.map((p) => [p.name, p.type === 'oidc' ? new OidcProvider(p) : new GitHubProvider(p)]))
    this.configs = new Map(config.providers.map((p) => [p.name, p]))
    this.linked = db.prepare<[string, string], string>('SELECT user FROM user_identities WHERE issuer = ? AND subject = ?').pluck()
    this.link = db.prepare('INSERT INTO user_identities (issuer, subject, user, created_at, last_sign_in) VALUES (?, ?, ?, ?, ?)')
    this.unlink = db.prepare('DELETE FROM user_identities WHERE issuer = ? AND subject = ?')
    this.touch = db.prepare('UPDATE user_identities SET last_sign_in = ? WHERE issuer = ? AND subject = ?')
  }

  /** The ChatGate user this account signs in as; SignInRefused when it may not. */
  admit (provider: IdentityProvider, identity: ExternalIdentity): Admitted {
    const config = this.configs.get(provider.name)!
    const email = identity.email !== undefined && EMAIL.test(identity.email) ? identity.email : undefined
    if (config.allowedEmailDomains.length > 0) {
      const domain = email?.slice(email.lastIndexOf('@') + 1).toLowerCase()
      if (domain === undefined || !config.allowedEmailDomains.some((d) => d.toLowerCase() === domain)) {
        throw new SignInRefused(email === undefined
          ? `your ${provider.title} account has no verified e-mail address, which this site needs`
          : `e-mail addresses at ${domain} may not sign in here`)
      }
    }
    return this.db.transaction((): Admitted => {
      const now = Date.now()
      const known = this.linked.get(provider.issuer, identity.subject)
      const user = known === undefined ? undefined : this.users.get(known)
      if (user !== undefined) {
        if (!user.enabled) throw new SignInRefused(`the ChatGate account ${user.name} is disabled`)
        if (email !== undefined && email !== user.email && user.source === 'store') this.users.update(user.name, { email })
        this.touch.run(now, provider.issuer, identity.subject)
        return { user: user.name, created: false }
      }
      if (known !== undefined) this.unlink.run(provider.issuer, identity.subject)
      const name = userNameFrom(identity.name)
      if (this.users.get(name) !== undefined) {
        throw new SignInRefused(`the user name ${name} already belongs to another ChatGate account; please ask an admin`)
      }
      this.users.addExternal({ name, email, role: this.config.newUserRole })
      this.link.run(provider.issuer, identity.subject, name, now, now)
      return { user: name, created: true }
    })()
  }
}
