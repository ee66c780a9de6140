import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createSecureContext, type SecureContext } from 'node:tls'
import type { Config } from '../config/schema.js'

// A certificate chain and its key, checked before anything serves them: a bad pair is refused
// with a reason, never half-loaded.

export interface KeyPair { cert: string, key: string }

export interface Loaded {
  pair: KeyPair
  /** DNS names of the leaf (subjectAltName). */
  names: string[]
  notBefore: Date
  notAfter: Date
  context: SecureContext
}

export class CertificateError extends Error {}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g

/** Reads and checks a certificate file and its key file. */
export function loadFiles (files: { certFile: string, keyFile: string }): Loaded {
  return loadPair({ cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') }, files.certFile)
}

export function loadPair (pair: KeyPair, origin: string): Loaded {
  const blocks = pair.cert.match(PEM_CERT)
  if (blocks === null) throw new CertificateError(`${origin}: no PEM certificate found`)
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(blocks[0]!)
  } catch (err) {
    throw new CertificateError(`${origin}: malformed certificate (${(err as Error).message})`)
  }
  let key
  try {
    key = createPrivateKey(pair.key)
  } catch (err) {
    throw new CertificateError(`${origin}: malformed private key (${(err as Error).message})`)
  }
  if (!leaf.checkPrivateKey(key)) throw new CertificateError(`${origin}: the private key does not belong to the certificate`)
  const names = (leaf.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4))
  const context = createSecureContext({ cert: pair.cert, key: pair.key })
  return { pair, names, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), context }
}

/** Problems with the certificate files of tls.mode manual, by config path. */
export function manualCertificateProblems (config: Config): string[] {
  if (config.tls.mode !== 'manual') return []
  const problems: string[] = []
  config.tls.certificates.forEach((c, i) => {
    if (!('certFile' in c)) return
    try {
      loadFiles(c)
    } catch (err) {
      problems.push(`tls.certificates[${i}]: ${(err as Error).message}`)
    }
  })
  return problems
}
