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
