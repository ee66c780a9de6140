import { randomBytes } from 'node:crypto'
import { mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { KeyPair } from './material.js'

// Certificates, keys and the ACME account under `<store.dir>/tls`, shared by every replica that
// mounts it: writes are atomic (temp file + rename) with mode 0600, and a lock file makes one
// replica order a certificate while the others wait and then read it.

const LOCK_REFRESH_MS = 5000
const LOCK_STALE_MS = 4 * LOCK_REFRESH_MS
const LOCK_POLL_MS = 500

export class TlsStorage {
  constructor (readonly dir: string) {}

  private path (name: string): string {
    return join(this.dir, name)
  }

  /** Throws a clear error when the directory cannot hold certificates. */
  check (): void {
    try {
      this.write('.writable', String(Date.now()))
      this.remove('.writable')
    } catch (err) {
      throw new Error(`tls: cannot use the certificate storage ${this.dir}: ${(err as Error).message}`)
    }
  }

  read (name: string): string | undefined {
    try {
      return readFileSync(this.path(name), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  write (name: string, content: string): void {
    const target = this.path(name)
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 })
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`
    writeFileSync(temp, content, { mode: 0o600 })
    renameSync(temp, target)
  }

  remove (name: string): void {
    rmSync(this.path(name), { force: true })
  }

  readPair (id: string): KeyPair | undefined {
    const cert = this.read(`certificates/${id}/cert.pem`)
    const key = this.read(`certificates/${id}/key.pem`)
    return cert === undefined || key === undefined ? undefined : { cert, key }
  }

  /**
   * Key first: a reader that finds the new certificate finds its key. One caught in between sees
   * a pair that does not match, which loading refuses, and tries again later.
   */
  writePair (id: string, pair: KeyPair): void {
    this.write(`certificates/${id}/key.pem`, pair.key)
    this.write(`certificates/${id}/cert.pem`, pair.cert)
  }

  /**
   * Takes the lock `name`, waiting while another holder keeps it fresh; a lock left by a crashed
   * holder goes stale and is taken over. Resolves with the release function.
   */
  async lock (name: string, signal?: { aborted: boolean }): Promise<() => void> {
    const file = this.path(`locks/${name}.lock`)
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
    for (;;) {
      try {
        closeSync(openSync(file, 'wx', 0o600))
        const refresh = setInterval(() => { try { const now = new Date(); utimesSync(file, now, now) } catch {} }, LOCK_REFRESH_MS)
        refresh.unref()
        return () => {
          clearInterval(refresh)
          rmSync(file, { force: true })
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      try {
        if (Date.now() - statSync(file).mtimeMs > LOCK_STALE_MS) rmSync(file, { force: true })
      } catch {}
      if (signal?.aborted === true) throw new Error('stopped while waiting for a lock')
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS))
    }
  }
}

/** A storage-safe id for a set of names: the first name, wildcard spelled out. */
export function certificateId (names: string[]): string {
  return names[0]!.toLowerCase().replace(/^\*\./, '_wildcard.')
}
