import type { Config, Role } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import type { Db } from '../store/database.js'
import { hashPassword } from './passwords.js'
import { END_USER_SESSIONS } from './sessions.js'

// Users live in two places: the config file's auth.users (a few accounts for small setups,
// managed by editing the file) and the store (managed over REST and the CLI, with an enabled
// flag). A name is in one or the other: the store refuses names the config file has, and should
// the file gain a name the store already holds, the file's entry wins everywhere.

/** The pattern of user names, the same as for auth.users in the config file. */
export const USER_NAME_PATTERN = '^[A-Za-z0-9._@-]+$'
const USER_NAME = new RegExp(USER_NAME_PATTERN)
export const EMAIL_PATTERN = '^[^@\\s]+@[^@\\s]+$'
const EMAIL = new RegExp(EMAIL_PATTERN)
export const MIN_PASSWORD_LENGTH = 8
/** The password hash of users from an identity provider: verifyPassword never accepts it. */
const NO_PASSWORD = '!external'

/** What `standing()` answers, as small integers so that the per-request check allocates nothing. */
export const DISABLED = 0
export const ROLE_USER = 1
export const ROLE_ADMIN = 2

export interface User {
  name: string
  email?: string
  role: Role
  enabled: boolean
  /** `config`: from auth.users, read-only here; `store`: managed over REST and the CLI. */
  source: 'store' | 'config'
  createdAt?: string
  updatedAt?: string
}

export interface NewUser { name: string, password: string, role?: Role | undefined, email?: string | undefined }
/** `email: null` removes the address. */
export interface UserChange { enabled?: boolean | undefined, role?: Role | undefined, email?: string | null | undefined }
/** What login and refresh need; the hash never leaves the auth code. */
export interface Account { name: string, role: Role, enabled: boolean, passwordHash: string }

type ConfigUser = Config['auth']['users'][number]
interface Row { name: string, email: string | null, role: Role, enabled: number, password_hash: string, created_at: number, updated_at: number }

const unknownUser = (name: string): GatewayError => new GatewayError(404, `unknown user '${name}'`, 'user_not_found')
const inConfig = (name: string): GatewayError =>
  new GatewayError(409, `user '${name}' is managed in the config file (auth.users); change it there`, 'config_user')

function fromRow (row: Row): User {
  return {
    name: row.name,
    ...(row.email !== null && { email: row.email }),
    role: row.role,
    enabled: row.enabled === 1,
    source: 'store',
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  }
}

const fromConfig = (u: ConfigUser): User => ({ name: u.username, role: u.role ?? 'user', enabled: true, source: 'config' })

function checkPassword (password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new GatewayError(400, `password must have at least ${MIN_PASSWORD_LENGTH} characters`, 'invalid_password')
}

function checkEmail (email: string | null | undefined): void {
  if (typeof email === 'string' && !EMAIL.test(email)) throw new GatewayError(400, `email '${email}' is not an address like name@example.org`, 'invalid_request')
}

export class Users {
  private configUsers!: ReadonlyMap<string, ConfigUser>
  private readonly byName
  private readonly all
  private readonly insert
  private readonly standingStatement
  private readonly setHash
  private readonly endSessions

  constructor (private readonly db: Db, configUsers: Config['auth']['users']) {
    this.setConfigUsers(configUsers)
    this.byName = db.prepare<[string], Row>('SELECT * FROM users WHERE name = ?')
    this.all = db.prepare<[], Row>('SELECT * FROM users ORDER BY name')
    this.insert = db.prepare('INSERT INTO users (name, email, role, enabled, password_hash, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?)')
    // Hot path: a primary-key lookup that yields one small integer (see DISABLED, ROLE_*).
    this.standingStatement = db.prepare<[string], number>(`SELECT CASE WHEN enabled = 0 THEN ${DISABLED} WHEN role = 'admin' THEN ${ROLE_ADMIN} ELSE ${ROLE_USER} END
      FROM users WHERE name = ?`).pluck()
    this.setHash = db.prepare('UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?')
    this.endSessions = db.prepare(END_USER_SESSIONS)
  }

  /** The config file's users from now on (a config reload). */
  setConfigUsers (configUsers: Config['auth']['users']): void {
    this.configUsers = new Map(configUsers.map((u) => [u.username, u]))
  }

  /** Adds a store user; 409 when the name is taken here or in the config file. */
  async add (spec: NewUser): Promise<User> {
    if (!USER_NAME.test(spec.name)) throw new GatewayError(400, `user name '${spec.name}' may only have letters, digits and . _ @ -`, 'invalid_request')
    checkEmail(spec.email)
    checkPassword(spec.password)
    this.assertFree(spec.name)
    const hash = await hashPassword(spec.password)
    const now = Date.now()
    try {
      this.insert.run(spec.name, spec.email ?? null, spec.role ?? 'user', hash, now, now)
    } catch (err) {
      // Added by someone else while the password was being hashed.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new GatewayError(409, `user '${spec.name}' already exists`, 'user_exists')
      throw err
    }
    return this.get(spec.name)!
  }

  /**
   * Adds a store user who signs in through an identity provider: no password works for them
   * (the stored hash is no scrypt hash) until an admin sets one. 409 when the name is taken.
   */
  addExternal (spec: { name: string, email?: string | undefined, role: Role }): User {
    if (!USER_NAME.test(spec.name)) throw new GatewayError(400, `user name '${spec.name}' may only have letters, digits and . _ @ -`, 'invalid_request')
    checkEmail(spec.email)
    this.assertFree(spec.name)
    const now = Date.now()
    this.insert.run(spec.name, spec.email ?? null, spec.role, NO_PASSWORD, now, now)
    return this.get(spec.name)!
  }

  /** Config-file users first (in file order), then store users by name. */
  list (): User[] {
    return [...[...this.configUsers.values()].map(fromConfig), ...this.all.all().filter((r) => !this.configUsers.has(r.name)).map(fromRow)]
  }

  get (name: string): User | undefined {
    const configured = this.configUsers.get(name)
    if (configured !== undefined) return fromConfig(configured)
    const row = this.byName.get(name)
    return row === undefined ? undefined : fromRow(row)
  }

  /** For login and refresh: the user's role, state and password hash, from wherever they are defined. */
  account (name: string): Account | undefined {
    const configured = this.configUsers.get(name)
    if (configured !== undefined) return { name, role: configured.role ?? 'user', enabled: true, passwordHash: configured.passwordHash }
    const row = this.byName.get(name)
    return row === undefined ? undefined : { name, role: row.role, enabled: row.enabled === 1, passwordHash: row.password_hash }
  }

  /**
   * Per request: DISABLED, ROLE_USER or ROLE_ADMIN for a store user, undefined for anyone else
   * (config-file users, and the subjects of `chatgate token`, whom the store does not know).
   */
  standing (name: string): number | undefined {
    const standing = this.standingStatement.get(name)
    return standing === undefined || this.configUsers.has(name) ? undefined : standing
  }

  /** Changes a store user; disabling ends the user's sessions (their refresh tokens stop working). */
  update (name: string, change: UserChange): User {
    checkEmail(change.email)
    this.assertInStore(name)
    const sets: string[] = []
    const values: Array<string | number | null> = []
    if (change.enabled !== undefined) { sets.push('enabled = ?'); values.push(change.enabled ? 1 : 0) }
    if (change.role !== undefined) { sets.push('role = ?'); values.push(change.role) }
    if (change.email !== undefined) { sets.push('email = ?'); values.push(change.email) }
    const now = Date.now()
    this.db.transaction(() => {
      this.db.prepare(`UPDATE users SET ${[...sets, 'updated_at = ?'].join(', ')} WHERE name = ?`).run(...values, now, name)
      if (change.enabled === false) this.endSessions.run(now, name)
    })()
    return this.get(name)!
  }

  setEnabled (name: string, enabled: boolean): User {
    return this.update(name, { enabled })
  }

  setRole (name: string, role: Role): User {
    return this.update(name, { role })
  }

  /** Sets a new password and ends every session of the user: whoever knew the old one is logged out. */
  async resetPassword (name: string, password: string): Promise<User> {
    checkPassword(password)
    this.assertInStore(name)
    const hash = await hashPassword(password)
    const now = Date.now()
    this.db.transaction(() => {
      this.setHash.run(hash, now, name)
      this.endSessions.run(now, name)
    })()
    return this.get(name)!
  }

  private assertFree (name: string): void {
    if (this.configUsers.has(name)) throw inConfig(name)
    if (this.byName.get(name) !== undefined) throw new GatewayError(409, `user '${name}' already exists`, 'user_exists')
  }

  private assertInStore (name: string): void {
    if (this.configUsers.has(name)) throw inConfig(name)
    if (this.byName.get(name) === undefined) throw unknownUser(name)
  }
}
