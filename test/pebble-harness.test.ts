// End-to-end proof that test/helpers/pebble.ts gives a real ACME CA: acme-client orders
// certificates from Pebble, Pebble really validates HTTP-01 (against a node:http server on
// pebble.httpPort) and DNS-01 (against TXT records in pebble-challtestsrv), and the issued chains
// verify against pebble.caBundle with verification on.
//
// acme-client's auto() runs its own verifyChallenge() before telling the CA, which resolves names
// with the system resolver and dials port 80: neither can reach these fake names, so every auto()
// here passes `skipChallengeVerification: true`. The CA's validation is the real check.
import t, { type Test } from 'tap'
import * as acme from 'acme-client'
import { randomBytes, X509Certificate } from 'node:crypto'
import { createServer as createHttpServer, type Server } from 'node:http'
import { get as httpsGet } from 'node:https'
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { startPebble, trustPebbleInAcmeClient, type Pebble } from './helpers/pebble.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** An HTTP-01 responder on 127.0.0.1:port, the way the gateway will answer Pebble's VA. */
async function http01Responder (t: Teardown, port: number): Promise<{ tokens: Map<string, string>, requests: Array<{ host: string | undefined, url: string | undefined }> }> {
  const tokens = new Map<string, string>()
  const requests: Array<{ host: string | undefined, url: string | undefined }> = []
  const prefix = '/.well-known/acme-challenge/'
  const server: Server = createHttpServer((req, res) => {
    requests.push({ host: req.headers.host, url: req.url })
    const keyAuth = req.url?.startsWith(prefix) === true ? tokens.get(req.url.slice(prefix.length)) : undefined
    if (keyAuth === undefined) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(keyAuth)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { tokens, requests }
}

function newClient (pebble: Pebble, extra: Partial<ConstructorParameters<typeof acme.Client>[0]> = {}): Promise<acme.Client> {
  return acme.crypto.createPrivateEcdsaKey().then((accountKey) => new acme.Client({
    directoryUrl: pebble.directoryUrl,
    accountKey,
    // Poll fast: Pebble validates at once (PEBBLE_VA_NOSLEEP); bounded at 100 polls.
    backoffAttempts: 100,
    backoffMin: 20,
    backoffMax: 200,
    ...extra,
  }))
}

/** Check leaf -> ... -> a root in caBundle with X509Certificate; returns the leaf. */
function verifyChain (t: Test, chainPem: string, caBundle: string): X509Certificate {
  const chain = acme.crypto.splitPemChain(chainPem).map((pem) => new X509Certificate(pem))
  const roots = acme.crypto.splitPemChain(caBundle).map((pem) => new X509Certificate(pem))
  t.ok(chain.length >= 2, 'Pebble returns the leaf and its intermediate')
  for (let i = 0; i + 1 < chain.length; i++) {
    t.ok(chain[i]!.checkIssued(chain[i + 1]!), `cert ${i} names cert ${i + 1} as issuer`)
    t.ok(chain[i]!.verify(chain[i + 1]!.publicKey), `cert ${i} is signed by cert ${i + 1}`)
  }
  const top = chain[chain.length - 1]!
  const root = roots.find((r) => top.checkIssued(r) && top.verify(r.publicKey))
  t.ok(root, 'the last cert of the chain is signed by a root in caBundle')
  t.ok(root?.verify(root.publicKey), 'that root is self-signed')
  return chain[0]!
}

/** Serve the chain on a TLS server and connect with ca: caBundle; resolves with the verification outcome. */
async function tlsHandshake (t: Teardown, key: Buffer, cert: string, ca: string, servername: string): Promise<{ authorized: boolean, error?: string }> {
  const server = createTlsServer({ key, cert }, (socket) => socket.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  return await new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca }, () => {
      resolve({ authorized: socket.authorized })
      socket.end()
    })
    socket.once('error', (err) => resolve({ authorized: false, error: (err as NodeJS.ErrnoException).code ?? err.message }))
  })
}

let pebble: Pebble

t.before(async () => {
  pebble = await startPebble(t)
  trustPebbleInAcmeClient(acme.axios, pebble, t)
})

t.test('the harness is up, verified over HTTPS, with fresh roots', async (t) => {
  t.match(pebble.directoryUrl, /^https:\/\/127\.0\.0\.1:\d+\/dir$/)
  t.match(pebble.caBundle, /^-----BEGIN CERTIFICATE-----/)
  t.match(new X509Certificate(pebble.caBundle).subject, /Pebble Root CA/)
  t.match(new X509Certificate(pebble.intermediates).issuer, /Pebble Root CA/)
  const ports = [pebble.dnsPort, pebble.httpPort, pebble.tlsAlpnPort, Number(new URL(pebble.directoryUrl).port), Number(new URL(pebble.managementUrl).port), Number(new URL(pebble.challtestsrvUrl).port)]
  t.equal(new Set(ports).size, ports.length, 'every port is distinct')

  // Pebble's listener is not trusted by default: the harness does not rely on disabled verification.
  const untrusted = await new Promise<string>((resolve) => {
    httpsGet(pebble.directoryUrl, (res) => { res.resume(); resolve(`status ${String(res.statusCode)}`) })
      .once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
  t.match(untrusted, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/, 'the directory fails verification without tlsCa')

  const client = await newClient(pebble)
  const account = await client.createAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.test'] })
  t.equal(account.status, 'valid', 'acme-client created an account through Pebble\'s HTTPS')
  t.match(client.getAccountUrl(), /^https:\/\/127\.0\.0\.1:\d+\//)
})

t.test('HTTP-01: Pebble validates against a server on httpPort, the chain verifies against caBundle', async (t) => {
  const responder = await http01Responder(t, pebble.httpPort)
  const client = await newClient(pebble)
  const [key, csr] = await acme.crypto.createCsr({ commonName: 'harness.example.test', altNames: ['harness.example.test'] }, await acme.crypto.createPrivateEcdsaKey())
  const chainPem = await client.auto({
    csr,
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
      t.equal(challenge.type, 'http-01')
      responder.tokens.set((challenge as { token: string }).token, keyAuthorization)
    },
    challengeRemoveFn: async (_authz, challenge) => {
      responder.tokens.delete((challenge as { token: string }).token)
    },
  })

  t.ok(responder.requests.some((r) => r.host === `harness.example.test:${pebble.httpPort}` && r.url?.startsWith('/.well-known/acme-challenge/') === true),
    'Pebble\'s VA fetched the token from 127.0.0.1:httpPort with the identifier as Host')
  const leaf = verifyChain(t, chainPem, pebble.caBundle)
  t.equal(leaf.checkHost('harness.example.test'), 'harness.example.test')
  t.equal(leaf.checkHost('other.example.test'), undefined)

  const good = await tlsHandshake(t, key, chainPem, pebble.caBundle, 'harness.example.test')
  t.same(good, { authorized: true }, 'tls.connect with ca: caBundle verifies the served chain')
  const wrongCa = await tlsHandshake(t, key, chainPem, pebble.tlsCa, 'harness.example.test')
  t.equal(wrongCa.authorized, false, 'and a client without Pebble\'s root rejects it')
  const wrongName = await tlsHandshake(t, key, chainPem, pebble.caBundle, 'other.example.test')
  t.equal(wrongName.error, 'ERR_TLS_CERT_ALTNAME_INVALID', 'and a name the cert does not hold is rejected')
})

t.test('HTTP-01 with a wrong key authorization is refused: challenges are really validated', async (t) => {
  const responder = await http01Responder(t, pebble.httpPort)
  const client = await newClient(pebble)
  const [, csr] = await acme.crypto.createCsr({ commonName: 'refused.example.test' }, await acme.crypto.createPrivateEcdsaKey())
  await t.rejects(client.auto({
    csr,
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge) => {
      responder.tokens.set((challenge as { token: string }).token, 'not-the-key-authorization')
    },
    challengeRemoveFn: async () => {},
  }), /unauthorized|did not match/i)
  t.ok(responder.requests.length > 0, 'Pebble did ask the responder')
})

t.test('DNS-01: a wildcard order validated through challtestsrv TXT records', async (t) => {
  const client = await newClient(pebble)
  const [key, csr] = await acme.crypto.createCsr({ commonName: '*.wild.example.test', altNames: ['*.wild.example.test'] }, await acme.crypto.createPrivateEcdsaKey())
  const set: string[] = []
  const chainPem = await client.auto({
    csr,
    termsOfServiceAgreed: true,
    challengePriority: ['dns-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (authz, challenge, keyAuthorization) => {
      t.equal(challenge.type, 'dns-01')
      t.equal(authz.wildcard, true)
      const host = `_acme-challenge.${authz.identifier.value}`
      set.push(host)
      await pebble.setTxt(host, keyAuthorization)
    },
    challengeRemoveFn: async (authz) => {
      await pebble.clearTxt(`_acme-challenge.${authz.identifier.value}`)
    },
  })
  t.same(set, ['_acme-challenge.wild.example.test'])
  const leaf = verifyChain(t, chainPem, pebble.caBundle)
  t.equal(leaf.checkHost('anything.wild.example.test'), '*.wild.example.test', 'the leaf is for *.wild.example.test')
  t.equal(leaf.checkHost('wild.example.test'), undefined)
  t.same(await tlsHandshake(t, key, chainPem, pebble.caBundle, 'foo.wild.example.test'), { authorized: true })
})

t.test('a second Pebble: short validity and external account binding', async (t) => {
  const kid = 'kid-test'
  const hmacKey = randomBytes(32).toString('base64url')
  const short = await startPebble(t, { validityPeriodSeconds: 90, eabKeys: { [kid]: hmacKey } })
  trustPebbleInAcmeClient(acme.axios, short, t)
  t.not(short.caBundle, pebble.caBundle, 'each Pebble has its own root')
  t.not(short.httpPort, pebble.httpPort)

  const noEab = await newClient(short)
  await t.rejects(noEab.createAccount({ termsOfServiceAgreed: true }), /externalAccountBinding/, 'EAB is required')

  const responder = await http01Responder(t, short.httpPort)
  const client = await newClient(short, { externalAccountBinding: { kid, hmacKey } })
  const [, csr] = await acme.crypto.createCsr({ commonName: 'short.example.test' }, await acme.crypto.createPrivateEcdsaKey())
  const chainPem = await client.auto({
    csr,
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
      responder.tokens.set((challenge as { token: string }).token, keyAuthorization)
    },
    challengeRemoveFn: async () => {},
  })
  const leaf = verifyChain(t, chainPem, short.caBundle)
  const lifetime = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000
  // Pebble 2.4 sets notAfter = notBefore + period - 1s.
  t.ok(lifetime >= 88 && lifetime <= 90, `the leaf lives validityPeriodSeconds (${lifetime}s)`)
  t.equal(verifyChainOrFalse(chainPem, pebble.caBundle), false, 'the first Pebble\'s root does not verify it')
})

function verifyChainOrFalse (chainPem: string, caBundle: string): boolean {
  const chain = acme.crypto.splitPemChain(chainPem).map((pem) => new X509Certificate(pem))
  const top = chain[chain.length - 1]!
  return acme.crypto.splitPemChain(caBundle).some((pem) => top.verify(new X509Certificate(pem).publicKey))
}
