import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'

// The embedded store: one SQLite file under store.dir, in WAL mode so that a crash loses nothing
// committed and readers never wait for the writer. Migrations run in order, once, by user_version.

const MIGRATIONS: string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     prefix TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     owner TEXT NOT NULL,
     role TEXT NOT NULL,
     name TEXT NOT NULL DEFAULT '',
     models TEXT,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     expires_at INTEGER,
     revoked_at INTEGER
   );
   CREATE INDEX api_keys_owner ON api_keys (owner);`,
  // Users, login sessions with rotating refresh tokens, per-key limits, usage records.
  `ALTER TABLE api_keys ADD COLUMN limits TEXT;
   CREATE UNIQUE INDEX api_keys_owner_name ON api_keys (owner, name) WHERE name <> '' AND revoked_at IS NULL;
   CREATE TABLE users (
     name TEXT PRIMARY KEY,
     email TEXT,
     role TEXT NOT NULL,
     enabled INTEGER NOT NULL DEFAULT 1,
     password_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE sessions (
     id TEXT PRIMARY KEY,
     user TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER
   );
   CREATE INDEX sessions_user ON sessions (user);
   CREATE TABLE refresh_tokens (
     hash TEXT PRIMARY KEY,
     session_id TEXT NOT NULL REFERENCES sessions (id),
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     used_at INTEGER
   );
   CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
   CREATE TABLE usage (
     id INTEGER PRIMARY KEY,
     ts INTEGER NOT NULL,
     day TEXT NOT NULL,
     user TEXT NOT NULL,
     role TEXT NOT NULL,
     key_id TEXT,
     model TEXT NOT NULL,
     backend TEXT,
     endpoint TEXT NOT NULL,
     prompt_tokens INTEGER NOT NULL,
     completion_tokens INTEGER NOT NULL,
     estimated INTEGER NOT NULL DEFAULT 0,
     duration_ms INTEGER NOT NULL,
     ttft_ms INTEGER,
     status INTEGER NOT NULL
   );
   CREATE INDEX usage_day ON usage (day);
   CREATE INDEX usage_user_day ON usage (user, day);`,
  // 3: the BioChatter Next chat session a request belongs to (its /v1/tokenusage reads it).
  `ALTER TABLE usage ADD COLUMN session TEXT;
   CREATE INDEX usage_session_day ON usage (session, day) WHERE session IS NOT NULL;`,
  // 4: login sessions of browsers (the login gate): the session cookie, stored as its hash.
  `ALTER TABLE sessions ADD COLUMN cookie_hash TEXT;
   CREATE UNIQUE INDEX sessions_cookie ON sessions (cookie_hash) WHERE cookie_hash IS NOT NULL;`,
  // 5: who signed in through an identity provider: its account (issuer + subject) and our user.
  `CREATE TABLE user_identities (
     issuer TEXT NOT NULL,
     subject TEXT NOT NULL,
     user TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     last_sign_in INTEGER NOT NULL,
     PRIMARY KEY (issuer, subject)
   );`,
]

export type Db = Database.Database

export function openDatabase (dir: string): Db {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const db = new Database(join(dir, 'chatgate.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('busy_timeout = 5000')
  const version = db.pragma('user_version', { simple: true }) as number
  db.transaction(() => {
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!)
    db.pragma(`user_version = ${MIGRATIONS.length}`)
  })()
  return db
}
