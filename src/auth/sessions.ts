import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Db } from '../store/database.js'

// Login sessions. A login starts a session; its access JWTs carry the session id (`sid`) and live
// briefly, and its refresh token (`cgr_` and 43 random characters) trades for a new access token
// and a new refresh token. Each refresh token works once: presenting a used one means two parties
// hold it (a stolen copy, or the thief already used it), so the whole session ends. Only SHA-256
// of a refresh token is stored, as for API keys (256 random bits: a slow hash would add nothing).

export const REFRESH_PREFIX = 'cgr_'
const BROWSER_PREFIX = 'cgb_'

/** Ends every live session of a user; Users runs it inside its own transactions (password reset, disable). */
export const END_USER_SESSIONS = 'UPDATE sessions SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL'

/** Expired sessions are deleted at most this often (on login). */
const PRUNE_INTERVAL_MS = 3600_000

export interface Refresh {
  sessionId: string
  user: string
  /** Shown once, to the client; the store keeps only its hash. */
  refreshToken: string
  expiresAt: Date
}

/** Why a refresh token was refused (401), in words and as an error code. */
export interface RefreshProblem { problem: string, code: string }

interface TokenRow { session_id: string, expires_at: number, used_at: number | null, user: string, revoked_at: number | null }

const hashOf = (token: string): string => createHash('sha256').update(token).digest('hex')

export class Sessions {
  private readonly liveStatement
  private readonly insertSession
  private readonly insertToken
  private readonly tokenRow
  private readonly markUsed
  private readonly extend
  private readonly endStatement
  private readonly endUser
  private readonly pruneTokens
  private readonly pruneSessions
  private readonly rotation
  private prunedAt = 0
  private readonly insertBrowserSession
  private readonly browserRow

  constructor (private readonly db: Db) {
    // Hot path: one primary-key lookup that yields a number (1 live, 0 ended) or undefined (unknown).
    this.liveStatement = db.prepare<[string], number>('SELECT revoked_at IS NULL FROM sessions WHERE id = ?').pluck()
    this.insertSession = db.prepare('INSERT INTO sessions (id, user, created_at, expires_at) VALUES (?, ?, ?, ?)')
    this.insertBrowserSession = db.prepare('INSERT INTO sessions (id, user, created_at, expires_at, cookie_hash) VALUES (?, ?, ?, ?, ?)')
    this.browserRow = db.prepare<[string, number], { id: string, user: string }>('SELECT id, user FROM sessions WHERE cookie_hash = ? AND revoked_at IS NULL AND expires_at > ?')
    this.insertToken = db.prepare('INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
    this.tokenRow = db.prepare<[string], TokenRow>(`SELECT t.session_id, t.expires_at, t.used_at, s.user, s.revoked_at
      FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.hash = ?`)
    this.markUsed = db.prepare('UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL')
    this.extend = db.prepare('UPDATE sessions SET expires_at = ? WHERE id = ?')
    this.endStatement = db.prepare('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL')
    this.endUser = db.prepare(END_USER_SESSIONS)
    this.pruneTokens = db.prepare('DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE expires_at < ?)')
    this.pruneSessions = db.prepare('DELETE FROM sessions WHERE expires_at < ?')
    // One transaction: two refreshes with the same token cannot both succeed.
    this.rotation = db.transaction((token: string, ttlSeconds: number): Refresh | RefreshProblem => {
      const hash = hashOf(token)
      const row = this.tokenRow.get(hash)
      if (row === undefined) return { problem: 'invalid refresh token', code: 'invalid_refresh_token' }
      if (row.revoked_at !== null) return { problem: 'session ended', code: 'session_ended' }
      const now = Date.now()
      if (row.used_at !== null) {
        this.endStatement.run(now, row.session_id)
        return { problem: 'refresh token already used; the session is ended, log in again', code: 'refresh_token_reused' }
      }
      if (row.expires_at <= now) return { problem: 'refresh token expired', code: 'refresh_token_expired' }
      this.markUsed.run(now, hash)
      return this.issue(row.session_id, row.user, now, ttlSeconds)
    })
  }

  /** A new session for a user who just proved who they are, with its first refresh token. */
  start (user: string, ttlSeconds: number): Refresh {
    const id = randomUUID()
    const now = Date.now()
    this.insertSession.run(id, user, now, now + ttlSeconds * 1000)
    return this.issue(id, user, now, ttlSeconds)
  }

  /**
   * A browser's session after it signed in on the login page: the cookie is a random secret the
   * store keeps only as a hash. It ends at `ttlSeconds` (no sliding), on sign-out, and with the
   * user's other sessions (disable, password reset).
   */
  startBrowser (user: string, ttlSeconds: number): { sessionId: string, cookie: string, expiresAt: Date } {
    const id = randomUUID()
    const cookie = BROWSER_PREFIX + randomBytes(32).toString('base64url')
    const now = Date.now()
    const expiresAt = now + ttlSeconds * 1000
    this.insertBrowserSession.run(id, user, now, expiresAt, hashOf(cookie))
    return { sessionId: id, cookie, expiresAt: new Date(expiresAt) }
  }

  /** The live, unexpired session a session cookie names. */
  browserSession (cookie: string): { id: string, user: string } | undefined {
    if (!cookie.startsWith(BROWSER_PREFIX)) return undefined
    return this.browserRow.get(hashOf(cookie), Date.now())
  }

  /** Trades a refresh token for the next one of its session; a reused token ends the session. */
  rotate (token: string, ttlSeconds: number): Refresh | RefreshProblem {
    return this.rotation.immediate(token, ttlSeconds)
  }

  /** Per request, for tokens with a `sid`: false once the session is ended or gone. */
  isLive (id: string): boolean {
    return this.liveStatement.get(id) === 1
  }

  /** True when the session was live and is now ended. */
  end (id: string): boolean {
    return this.endStatement.run(Date.now(), id).changes === 1
  }

  /** Ends the session a refresh token belongs to (used or not); false when unknown or already ended. */
  endByRefreshToken (token: string): boolean {
    const row = this.tokenRow.get(hashOf(token))
    return row !== undefined && this.end(row.session_id)
  }

  /** Ends every live session of a user; how many. */
  endAllOf (user: string): number {
    return this.endUser.run(Date.now(), user).changes
  }

  /**
   * Deletes sessions (and their refresh tokens) that expired before `before`. The caller passes
   * now minus the access-token lifetime: no access token of such a session can still be valid,
   * and an unknown `sid` is refused like an ended session anyway.
   */
  prune (before: number): void {
    const now = Date.now()
    if (now - this.prunedAt < PRUNE_INTERVAL_MS) return
    this.prunedAt = now
    this.db.transaction(() => {
      this.pruneTokens.run(before)
      this.pruneSessions.run(before)
    })()
  }

  private issue (sessionId: string, user: string, now: number, ttlSeconds: number): Refresh {
    const refreshToken = REFRESH_PREFIX + randomBytes(32).toString('base64url')
    const expiresAt = now + ttlSeconds * 1000
    this.insertToken.run(hashOf(refreshToken), sessionId, now, expiresAt)
    // A session lives as long as its newest refresh token: each refresh starts the lifetime again.
    this.extend.run(expiresAt, sessionId)
    return { sessionId, user, refreshToken, expiresAt: new Date(expiresAt) }
  }
}
