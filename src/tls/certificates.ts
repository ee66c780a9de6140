import { createHash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import type { SecureContext } from 'node:tls'
import type { FastifyBaseLogger } from 'fastify'
import { generate } from 'selfsigned'
import type { Config, TlsConfig } from '../config/schema.js'
import { AcmeIssuer, directoryUrl } from './acme.js'
import { loadFiles, loadPair, type KeyPair, type Loaded } from './material.js'
import { covers } from './names.js'
import { TlsStorage, certificateId } from './storage.js'

// Every certificate the gateway serves, chosen per connection by SNI. A renewed or re-read
// certificate replaces the old one for new connections; connections already open keep theirs.
// Whatever goes wrong while getting a new one, the one being served stays.

const SELF_SIGNED_DAYS = 365
const RELOAD_DEBOUNCE_MS = 200

interface Slot {
  id: string
  names: string[]
  files?: { certFile: string, keyFile: string }
  current?: Loaded
  lastError?: string
  failures: number
  nextAttemptAt: number
}

export interface CertificateStatus { names: string[], notAfter?: string, renewAt?: string, lastError?: string, failures: number, nextAttemptAt?: string }

/** Renew once a third of the lifetime is left (as Caddy does). */
export function renewalTime (c: Loaded): number {
  const lifetime = c.notAfter.getTime() - c.notBefore.getTime()
  return c.notAfter.getTime() - lifetime / 3
}

export class Certificates {
  readonly storage: TlsStorage
  private readonly slots: Slot[]
  private readonly tls: TlsConfig
  private issuer: AcmeIssuer | undefined
  private timer: NodeJS.Timeout | undefined
  private watchers: FSWatcher[] = []
  private reloadTimer: NodeJS.Timeout | undefined
  private stopped = false
  private renewing: Promise<void> | undefined
  /** Told when the default certificate (for clients that send no server name) changes. */
  onDefaultChange: ((pair: KeyPair) => void) | undefined

  constructor (config: Config, private log: FastifyBaseLogger) {
    this.tls = config.tls
    this.storage = new TlsStorage(join(config.store.dir, 'tls'))
    const groups = this.tls.certificates.map((c) => ('names' in c ? { names: c.names } : { names: [], files: c }))
    if (this.tls.names.length > 0) groups.unshift({ names: this.tls.names })
    // Certificates are kept per issuer: going from Let's Encrypt staging to production must not
    // serve the stored staging certificate.
    const issuer = this.tls.mode === 'acme' ? `acme-${createHash('sha256').update(directoryUrl(this.tls.acme)).digest('hex').slice(0, 12)}` : this.tls.mode
    this.slots = groups.map((g, i) => ({ id: g.names.length > 0 ? `${issuer}/${certificateId(g.names)}` : `file-${i}`, ...g, failures: 0, nextAttemptAt: 0 }))
  }

  setLogger (log: FastifyBaseLogger): void {
    this.log = log
  }

  /** For the TLS server: the context of the certificate covering `servername` (or the first). */
  readonly sniCallback = (servername: string, done: (err: Error | null, ctx?: SecureContext) => void): void => {
    const context = this.contextFor(servername)
    if (context === undefined) done(new Error(`no certificate for ${servername || 'a client without SNI'}`))
    else done(null, context)
  }

  contextFor (servername: string): SecureContext | undefined {
    const served = this.slots.filter((s) => s.current !== undefined)
    const match = servername === '' ? undefined : served.find((s) => s.current!.names.some((n) => covers(n, servername)))
    return (match ?? served[0])?.current?.context
  }

  status (): CertificateStatus[] {
    return this.slots.map((s) => ({
      names: s.current?.names ?? s.names,
      failures: s.failures,
      ...(s.current !== undefined && { notAfter: s.current.notAfter.toISOString(), renewAt: new Date(renewalTime(s.current)).toISOString() }),
      ...(s.lastError !== undefined && { lastError: s.lastError, nextAttemptAt: new Date(s.nextAttemptAt).toISOString() }),
    }))
  }

  /** Loads or obtains every certificate, then keeps them current. */
  async start (): Promise<void> {
    if (this.tls.mode === 'manual') {
      this.reload()
      for (const slot of this.slots) {
        if (slot.current === undefined) throw new Error(`tls: ${slot.lastError}`)
        for (const file of [slot.files!.certFile, slot.files!.keyFile]) this.watchers.push(watch(file, () => this.reloadSoon()))
      }
      return
    }
    this.storage.check()
    if (this.tls.mode === 'acme') this.issuer = new AcmeIssuer(this.tls, this.storage, this.log)
    await this.renewDue()
    const every = this.tls.acme.renewCheckIntervalMs
    const tick = (): void => {
      if (this.stopped) return
      // Jitter, so replicas started together do not all check at once; a failed order is retried
      // when its backoff ends rather than at the next regular check.
      const retryAt = Math.min(...this.slots.filter((s) => s.lastError !== undefined).map((s) => s.nextAttemptAt))
      const wait = Math.min(every * (0.9 + Math.random() * 0.2), Math.max(100, retryAt - Date.now()))
      this.timer = setTimeout(() => { void this.renewDue().finally(tick) }, wait)
      this.timer.unref()
    }
    tick()
  }

  /** Re-reads certificate files (manual mode): on change and on SIGHUP. A bad file keeps the old pair. */
  reload (): void {
    for (const slot of this.slots) {
      if (slot.files === undefined) continue
      try {
        this.install(slot, loadFiles(slot.files))
      } catch (err) {
        this.fail(slot, err, slot.current === undefined ? 'cannot load certificate' : 'cannot reload certificate; still serving the previous one')
      }
    }
  }

  private reloadSoon (): void {
    clearTimeout(this.reloadTimer)
    this.reloadTimer = setTimeout(() => this.reload(), RELOAD_DEBOUNCE_MS)
  }

  private install (slot: Slot, loaded: Loaded): void {
    const changed = slot.current?.pair.cert !== loaded.pair.cert
    slot.current = loaded
    slot.failures = 0
    slot.lastError = undefined
    if (changed) this.log.info({ names: loaded.names, notAfter: loaded.notAfter.toISOString() }, 'certificate in service')
    const first = this.slots.find((s) => s.current !== undefined)
    if (changed && first === slot) this.onDefaultChange?.(loaded.pair)
  }

  private fail (slot: Slot, err: unknown, what: string): void {
    slot.failures += 1
    slot.lastError = (err as Error).message
    const { retryMinMs, retryMaxMs } = this.tls.acme
    slot.nextAttemptAt = Date.now() + Math.min(retryMinMs * 2 ** (slot.failures - 1), retryMaxMs)
    this.log.error({ names: slot.names, err: slot.lastError, notAfter: slot.current?.notAfter.toISOString(), nextAttemptAt: new Date(slot.nextAttemptAt).toISOString() }, what)
  }

  /** Renews (or first obtains) every certificate that is due; one round at a time. */
  renewDue (): Promise<void> {
    this.renewing ??= (async () => {
      for (const slot of this.slots) if (!this.stopped) await this.keepCurrent(slot)
    })().finally(() => { this.renewing = undefined })
    return this.renewing
  }

  private stored (slot: Slot): Loaded | undefined {
    const pair = this.storage.readPair(slot.id)
    if (pair === undefined) return undefined
    try {
      const loaded = loadPair(pair, `stored certificate ${slot.id}`)
      // Names changed in the config: the stored certificate no longer fits.
      return slot.names.every((n) => loaded.names.includes(n)) ? loaded : undefined
    } catch (err) {
      this.log.warn({ names: slot.names, err: (err as Error).message }, 'ignoring an unusable stored certificate')
      return undefined
    }
  }

  private async keepCurrent (slot: Slot): Promise<void> {
    try {
      await this.refresh(slot)
    } catch (err) {
      this.fail(slot, err, slot.current === undefined ? 'cannot obtain a certificate' : 'cannot renew the certificate; still serving the current one')
    }
  }

  private async refresh (slot: Slot): Promise<void> {
    const now = Date.now()
    const fresh = (c: Loaded | undefined): boolean => c !== undefined && renewalTime(c) > Date.now()
    if (slot.current === undefined || !fresh(slot.current)) {
      // Another replica (or this one before a restart) may already have a newer one.
      const stored = this.stored(slot)
      if (stored !== undefined && (slot.current === undefined || stored.notAfter > slot.current.notAfter)) this.install(slot, stored)
    }
    if (fresh(slot.current) || now < slot.nextAttemptAt) return
    const release = await this.storage.lock(`issue-${slot.id}`, this)
    try {
      // Re-check after taking the lock: whoever held it may have just renewed.
      const stored = this.stored(slot)
      if (stored !== undefined && fresh(stored)) {
        this.install(slot, stored)
        return
      }
      const pair = await this.obtain(slot)
      const loaded = loadPair(pair, `new certificate for ${slot.names.join(', ')}`)
      this.storage.writePair(slot.id, pair)
      this.install(slot, loaded)
    } finally {
      release()
    }
  }

  private async obtain (slot: Slot): Promise<KeyPair> {
    if (this.issuer !== undefined) return this.issuer.issue(slot.names)
    const days = SELF_SIGNED_DAYS * 24 * 3600_000
    const made = await generate([{ name: 'commonName', value: slot.names[0] }], {
      keyType: 'ec',
      curve: 'P-256',
      notBeforeDate: new Date(Date.now() - 60_000),
      notAfterDate: new Date(Date.now() + days),
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: slot.names.map((value) => ({ type: 2, value })) },
      ],
    })
    this.log.info({ names: slot.names }, 'self-signed certificate generated')
    return { cert: made.cert, key: made.private }
  }

  get aborted (): boolean {
    return this.stopped
  }

  close (): void {
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.reloadTimer)
    for (const w of this.watchers) w.close()
  }
}
