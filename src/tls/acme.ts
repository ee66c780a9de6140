import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { Agent } from 'node:https'
import { rootCertificates } from 'node:tls'
import { promisify } from 'node:util'
import * as acme from 'acme-client'
import type { FastifyBaseLogger } from 'fastify'
import type { TlsConfig } from '../config/schema.js'
import type { KeyPair } from './material.js'
import type { TlsStorage } from './storage.js'

// Orders certificates from an ACME CA with acme-client. HTTP-01 answers are kept in the shared
// storage, so whichever replica the CA reaches can answer; DNS-01 records are published by the
// admin's hook command, like certbot's manual hooks.

const run = promisify(execFile)
const HOOK_TIMEOUT_MS = 120_000

export function directoryUrl (config: TlsConfig['acme']): string {
  return config.directoryUrl ?? (config.staging ? acme.directory.letsencrypt.staging : acme.directory.letsencrypt.production)
}

/** Where HTTP-01 key authorizations live while a CA validates them. */
export const challengePath = (token: string): string => `challenges/${token.replace(/[^A-Za-z0-9_-]/g, '')}`

export class AcmeIssuer {
  private readonly url: string

  constructor (private readonly tls: TlsConfig, private readonly storage: TlsStorage, private readonly log: FastifyBaseLogger) {
    this.url = directoryUrl(tls.acme)
    // acme-client retries failed requests itself (5 s, 10 s, … apart); scaled with ours, so that an
    // unreachable CA costs one attempt of ours, not minutes.
    const settings = (acme.axios.defaults as unknown as { acmeSettings: { retryDefaultDelay: number } }).acmeSettings
    settings.retryDefaultDelay = Math.min(5, tls.acme.retryMinMs / 1000)
    if (tls.acme.caFile !== undefined) {
      // acme-client talks through its own axios instance; a private CA is trusted next to the usual roots.
      acme.axios.defaults.httpsAgent = new Agent({ ca: [...rootCertificates, readFileSync(tls.acme.caFile, 'utf8')] })
    }
  }

  /** The account key for this directory, created once and kept. */
  private async accountKey (): Promise<string> {
    const name = `acme/${Buffer.from(this.url).toString('base64url')}/account.key`
    const stored = this.storage.read(name)
    if (stored !== undefined) return stored
    const key = (await acme.crypto.createPrivateEcdsaKey()).toString()
    this.storage.write(name, key)
    return key
  }

  async issue (names: string[]): Promise<KeyPair> {
    const eab = this.tls.acme.eab
    // acme-client's own retries and polls (5 s to 30 s apart by default) scale with ours, so a short
    // retry setting means quick polls too.
    const { retryMinMs, retryMaxMs } = this.tls.acme
    const client = new acme.Client({
      directoryUrl: this.url,
      accountKey: await this.accountKey(),
      backoffMin: Math.min(5000, retryMinMs),
      backoffMax: Math.min(30_000, retryMaxMs),
      ...(eab !== undefined && { externalAccountBinding: eab }),
    })
    const key = (await acme.crypto.createPrivateEcdsaKey()).toString()
    const [, csr] = await acme.crypto.createCsr({ commonName: names[0], altNames: names }, key)
    const hook = this.tls.acme.dnsHook
    const record = (authz: acme.Authorization): string => `_acme-challenge.${authz.identifier.value}`
    const cert = await client.auto({
      csr,
      ...(this.tls.email !== undefined && { email: this.tls.email }),
      termsOfServiceAgreed: true,
      challengePriority: [this.tls.acme.challenge],
      skipChallengeVerification: !this.tls.acme.selfCheck,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type === 'http-01') this.storage.write(challengePath(challenge.token), keyAuthorization)
        else await run(hook!, ['present', record(authz), keyAuthorization], { timeout: HOOK_TIMEOUT_MS })
      },
      challengeRemoveFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type === 'http-01') this.storage.remove(challengePath(challenge.token))
        else await run(hook!, ['cleanup', record(authz), keyAuthorization], { timeout: HOOK_TIMEOUT_MS })
      },
    })
    this.log.info({ names, directory: this.url }, 'certificate issued')
    return { cert, key }
  }
}
