import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

// Stored form: scrypt$N$r$p$<salt base64>$<hash base64>, so parameters can be raised later
// without invalidating existing hashes.
const N = 16384
const R = 8
const P = 1
const KEY_LENGTH = 32

function derive (password: string, salt: Buffer, options: ScryptOptions, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, length, { ...options, maxmem: 256 * options.N! * options.r! }, (err, key) => {
      if (err) reject(err)
      else resolve(key)
    })
  })
}

export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, { N, r: R, p: P }, KEY_LENGTH)
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`
}

export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$')
  // Not a scrypt hash (a user from an identity provider has none): refused, as slowly as a wrong password.
  if (parts.length !== 6 || parts[0] !== 'scrypt') return await verifyPassword(password, DUMMY_HASH) && false
  const [n, r, p] = parts.slice(1, 4).map(Number)
  const salt = Buffer.from(parts[4]!, 'base64')
  const expected = Buffer.from(parts[5]!, 'base64')
  if (![n, r, p].every((v) => Number.isInteger(v) && v! > 0) || expected.length === 0) return false
  const key = await derive(password, salt, { N: n, r, p }, expected.length)
  return timingSafeEqual(key, expected)
}

/** Checked against when a user name is unknown, so that a wrong name costs as long as a wrong password. */
export const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
