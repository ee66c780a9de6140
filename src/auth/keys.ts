import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Config } from '../config/schema.js'

export interface JwtKeys {
  /** What @fastify/jwt takes as `secret`. */
  secret: string | { public: Buffer, private?: Buffer }
  canSign: boolean
}

const SECRET_FILE = 'jwt-secret'

/**
 * With HS256 and no configured secret, a random one is made on first start and kept under the
 * store directory (mode 0600), so issued tokens survive restarts.
 */
function storedSecret (dir: string): string {
  const file = join(dir, SECRET_FILE)
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const secret = randomBytes(48).toString('base64url')
  try {
    writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' })
    return secret
  } catch (err) {
    // Another process created it between our read and write: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8').trim()
    throw err
  }
}

export function loadJwtKeys (config: Config): JwtKeys {
  const jwt = config.auth.jwt
  if (jwt.algorithm === 'HS256') return { secret: jwt.secret ?? storedSecret(config.store.dir), canSign: true }
  const publicKey = readFileSync(jwt.publicKeyFile!)
  const privateKey = jwt.privateKeyFile === undefined ? undefined : readFileSync(jwt.privateKeyFile)
  return { secret: { public: publicKey, private: privateKey }, canSign: privateKey !== undefined }
}
