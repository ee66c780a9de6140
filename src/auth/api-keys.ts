import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Role } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import type { Users } from './users.js'
import type { Db } from '../store/database.js'

// API keys for programs: `cg_` and 43 random characters, shown once at creation. Only a SHA-256
// of the key is stored (a key has 256 random bits, so a slow hash adds nothing), and every
// request looks it up, so a revocation holds from the next request on.

export const KEY_PREFIX = 'cg_'

/** A key's own limits, on top of its owner's (0 or absent: none of its own). */
export interface KeyLimits { requestsPerMinute?: number, tokensPerDay?: number, tokensPerMonth?: number }

export interface ApiKey {
  id: string
  /** The first characters of the key, to recognise it in lists. */
  prefix: string
  owner: string
  role: Role
  name: string
  /** Glob patterns of the models the key may use (on top of its role's); undefined: all the role allows. */
  models?: string[]
  createdAt: string
  createdBy: string
  expiresAt?: string
  revokedAt?: string
  limits?: KeyLimits
}

interface Row {
  id: string, prefix: string, owner: string, role: Role, name: string, models: string | null
  created_at: number, created_by: string, expires_at: number | null, revoked_at: number | null, limits: string | null
}

/** What a key lets its caller act as: its owner, with the key's role, model list and limits. */
export interface KeyGrant { sub: string, role: Role, keyId: string, models?: string[], keyLimits?: KeyLimits }

type CheckRow = Pick<Row, 'id' | 'owner' | 'role' | 'models' | 'limits' | 'expires_at' | 'revoked_at'>

export interface NewKey { owner: string, role: Role, name?: string, models?: string[], expiresAt?: Date, createdBy: string, limits?: KeyLimits }

const hashOf = (key: string): string => createHash('sha256').update(key).digest('hex')
/** `{}` stores as no limits, so that lists show `limits` only on keys that have some. */
const limitsText = (limits: KeyLimits | undefined): string | null =>
  limits === undefined || Object.keys(limits).length === 0 ? null : JSON.stringify(limits)

/**
 * The role of a new key for `owner`, who must be a known user (store or config file): the owner's
 * role by default, never more than it. `unknown user` and a too-high role are bad input (400).
 */
export function keyRole (users: Users, owner: string, requested: Role | undefined): Role {
  const user = users.get(owner)
  if (user === undefined) throw new GatewayError(400, `unknown user '${owner}'`, 'unknown_user')
  if (requested === 'admin' && user.role !== 'admin') throw new GatewayError(400, `a key's role cannot exceed its owner's: '${owner}' is a user`, 'invalid_request')
  return requested ?? user.role
}

function fromRow (row: Row): ApiKey {
  return {
    id: row.id,
    prefix: row.prefix,
    owner: row.owner,
    role: row.role,
    name: row.name,
    ...(row.models !== null && { models: JSON.parse(row.models) as string[] }),
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
    ...(row.expires_at !== null && { expiresAt: new Date(row.expires_at).toISOString() }),
    ...(row.revoked_at !== null && { revokedAt: new Date(row.revoked_at).toISOString() }),
    ...(row.limits !== null && { limits: JSON.parse(row.limits) as KeyLimits }),
  }
}

export class ApiKeys {
  private readonly insert
  private readonly byOwner
  private readonly all
  private readonly byId
  private readonly revokeStatement
  private readonly checkStatement

  constructor (db: Db) {
    this.insert = db.prepare('INSERT INTO api_keys (id, prefix, hash, owner, role, name, models, created_at, created_by, expires_at, limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    this.byOwner = db.prepare<[string], Row>('SELECT * FROM api_keys WHERE owner = ? ORDER BY created_at')
    this.all = db.prepare<[], Row>('SELECT * FROM api_keys ORDER BY created_at')
    this.byId = db.prepare<[string], Row>('SELECT * FROM api_keys WHERE id = ?')
    this.revokeStatement = db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL')
    this.checkStatement = db.prepare<[string], CheckRow>('SELECT id, owner, role, models, limits, expires_at, revoked_at FROM api_keys WHERE hash = ?')
  }

  /**
   * Creates a key; the returned `key` is the only time it is seen. 409 when the owner already has
   * an active key of that name (a unique index says so, also against a CLI running alongside).
   */
  create (spec: NewKey): { key: string, record: ApiKey } {
    const key = KEY_PREFIX + randomBytes(32).toString('base64url')
    const id = randomUUID()
    try {
      this.insert.run(id, key.slice(0, 10), hashOf(key), spec.owner, spec.role, spec.name ?? '', spec.models === undefined ? null : JSON.stringify(spec.models), Date.now(), spec.createdBy, spec.expiresAt?.getTime() ?? null, limitsText(spec.limits))
    } catch (err) {
      // The only other unique columns are a random id and the hash of 256 random bits.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new GatewayError(409, `an active API key named '${spec.name}' already exists for ${spec.owner}`, 'key_name_taken')
      }
      throw err
    }
    return { key, record: this.get(id)! }
  }

  get (id: string): ApiKey | undefined {
    const row = this.byId.get(id)
    return row === undefined ? undefined : fromRow(row)
  }

  list (owner?: string): ApiKey[] {
    return (owner === undefined ? this.all.all() : this.byOwner.all(owner)).map(fromRow)
  }

  /** True when the key was active and is now revoked. */
  revoke (id: string): boolean {
    return this.revokeStatement.run(Date.now(), id).changes === 1
  }

  /** What a valid key grants and until when, or why it is refused. */
  verify (key: string): { grant: KeyGrant, expiresAt: number } | string {
    const row = this.checkStatement.get(hashOf(key))
    if (row === undefined) return 'invalid API key'
    if (row.revoked_at !== null) return 'API key revoked'
    if (row.expires_at !== null && row.expires_at <= Date.now()) return 'API key expired'
    const grant: KeyGrant = { sub: row.owner, role: row.role, keyId: row.id }
    if (row.models !== null) grant.models = JSON.parse(row.models) as string[]
    if (row.limits !== null) grant.keyLimits = JSON.parse(row.limits) as KeyLimits
    return { grant, expiresAt: row.expires_at ?? Infinity }
  }
}
