/**
 * A real Let's Encrypt Pebble ACME server plus pebble-challtestsrv, both on loopback, for tests of
 * an ACME client (acme-client) against a CA that really validates challenges.
 *
 * Needs the Debian package `pebble` (binaries /usr/bin/pebble and /usr/bin/pebble-challtestsrv;
 * bookworm ships Pebble 2.4.0) and `openssl`; .ci/run installs both.
 *
 * What it sets up:
 * - pebble-challtestsrv answers DNS (UDP and TCP) on 127.0.0.1:<dnsPort>: every A query gets
 *   127.0.0.1, no AAAA, and TXT records set through `setTxt`. Its own HTTP-01 / HTTPS-01 /
 *   TLS-ALPN-01 responders are disabled: the code under test answers the challenges.
 * - pebble is started with `-dnsserver 127.0.0.1:<dnsPort>`, so its VA resolves every identifier to
 *   127.0.0.1 and validates HTTP-01 by connecting to 127.0.0.1:<httpPort> (with the identifier as
 *   Host), TLS-ALPN-01 on 127.0.0.1:<tlsAlpnPort>, and DNS-01 by asking challtestsrv for the TXT.
 *   The server under test must listen on `httpPort` (a fixed number chosen free at start, or the
 *   one passed in options).
 * - Pebble's own HTTPS (ACME directory and management API) uses a key pair made at test time with
 *   openssl, self-signed for IP:127.0.0.1 and DNS:localhost; its PEM is `tlsCa`.
 * - Env: PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0 (all overridable by
 *   options). PEBBLE_VA_ALWAYS_VALID is never set and is removed from the inherited environment:
 *   every challenge is really validated.
 *
 * Trust, without ever disabling verification:
 * - To talk ACME to Pebble, trust `tlsCa` (Pebble's HTTPS listener), e.g. `new https.Agent({ ca: tlsCa })`.
 *   For acme-client, `trustPebbleInAcmeClient(acme.axios, pebble)` scopes that agent to Pebble's origin.
 * - To verify a certificate Pebble issued, trust `caBundle` (Pebble's issuing root, regenerated on
 *   every start): `tls.connect({ host, port, servername, ca: pebble.caBundle })`, or
 *   `https.request({ ..., ca: pebble.caBundle })`, against a server that presents the issued chain
 *   (leaf + intermediate, as Pebble returns it). Pebble's intermediate is not in `caBundle`: the
 *   server must send it, as with a real CA.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { promises as dns } from 'node:dns'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

export const PEBBLE_BIN = process.env.PEBBLE_BIN ?? 'pebble'
export const CHALLTESTSRV_BIN = process.env.PEBBLE_CHALLTESTSRV_BIN ?? 'pebble-challtestsrv'

export interface PebbleOptions {
  /** Lifetime of issued certificates in seconds (Pebble 2.4 config key `certificateValidityPeriod`). Default: Pebble's own (5 years). */
  validityPeriodSeconds?: number
  /** Port Pebble's VA connects to for HTTP-01 (config `httpPort`). Default: a free one. */
  httpPort?: number
  /** Port Pebble's VA connects to for TLS-ALPN-01 (config `tlsPort`). Default: a free one. */
  tlsAlpnPort?: number
  /** External account binding: kid -> base64url HMAC key. When given, Pebble requires EAB on newAccount. */
  eabKeys?: Record<string, string>
  /** PEBBLE_WFE_NONCEREJECT: percentage of good nonces rejected as badNonce. Default 0. */
  nonceRejectPercent?: number
  /** PEBBLE_AUTHZREUSE: percentage of valid authorizations reused in new orders. Default 0. */
  authzReusePercent?: number
  /** PEBBLE_CHAIN_LENGTH: 1 = leaf + 1 intermediate (default). */
  chainLength?: number
  /** PEBBLE_ALTERNATE_ROOTS: number of alternate chains; their roots are added to `caBundle`. Default 0. */
  alternateRoots?: number
  /** Domains Pebble refuses to issue for (config `domainBlocklist`). */
  domainBlocklist?: string[]
}

export interface Pebble {
  /** ACME directory, e.g. https://127.0.0.1:41234/dir */
  directoryUrl: string
  /** Pebble's management API (roots, intermediates, cert-status-by-serial), HTTPS trusting `tlsCa`. */
  managementUrl: string
  /** pebble-challtestsrv's management API (plain HTTP). */
  challtestsrvUrl: string
  /** PEM of Pebble's issuing root(s) (/roots/0 .. /roots/<alternateRoots>): the trust anchor for issued certs. */
  caBundle: string
  /** PEM of Pebble's intermediate(s) (/intermediates/0 ..), for tests that build chains themselves. */
  intermediates: string
  /** PEM of the self-signed certificate of Pebble's own HTTPS listeners (directory and management). */
  tlsCa: string
  /** challtestsrv's DNS port (UDP and TCP) on 127.0.0.1, which Pebble uses as its only resolver. */
  dnsPort: number
  /** Port Pebble's VA connects to (on 127.0.0.1) for HTTP-01: the server under test must listen on it. */
  httpPort: number
  /** Port Pebble's VA connects to (on 127.0.0.1) for TLS-ALPN-01 (Pebble's config key `tlsPort`). */
  tlsAlpnPort: number
  /** Same as tlsAlpnPort. Pebble 2.4's VA only follows HTTP-01 redirects to https on port 443, so there is no separate HTTPS-01 port. */
  httpsPort: number
  /** The validity period that was configured, if any. */
  validityPeriodSeconds?: number
  /** Add a TXT value for `host` (a trailing dot is added). Values for one host accumulate until clearTxt. */
  setTxt: (host: string, value: string) => Promise<void>
  /** Remove every TXT value for `host`. */
  clearTxt: (host: string) => Promise<void>
  /** POST any other challtestsrv command, e.g. ('/set-servfail', { host: 'x.test.' }). */
  challtestsrv: (path: string, body: unknown) => Promise<void>
  /** GET a management API path (e.g. `/cert-status-by-serial/<hex>`), parsed as JSON when it is. */
  management: (path: string) => Promise<unknown>
  /** Output of both processes so far, for failure messages. */
  logs: () => string
  /** Stop both processes and remove the temp dir. Idempotent; also registered with t.teardown. */
  stop: () => Promise<void>
}

interface Teardown { teardown: (fn: () => unknown) => void }

const READY_ATTEMPTS = 100
const READY_INTERVAL_MS = 100
const START_TRIES = 3
const LOG_LIMIT = 256 * 1024

/**
 * Start challtestsrv and Pebble on free loopback ports, wait until both answer, fetch Pebble's
 * roots, and register their shutdown with `t.teardown`.
 */
export async function startPebble (t: Teardown, options: PebbleOptions = {}): Promise<Pebble> {
  let lastError: unknown
  for (let attempt = 1; attempt <= START_TRIES; attempt++) {
    try {
      const pebble = await startOnce(options)
      t.teardown(() => pebble.stop())
      return pebble
    } catch (err) {
      lastError = err
      // A port chosen free was taken by someone else between our probe and the child's bind: retry with new ports.
      if (!(err instanceof PortRaceError)) throw err
    }
  }
  throw lastError
}

class PortRaceError extends Error {}

/** Children still running and temp dirs not yet removed: cleaned up if the test process exits without teardown. */
const live = new Set<Proc>()
const liveDirs = new Set<string>()
let exitHookInstalled = false
function cleanUpOnExit (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const p of live) p.killNow()
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true })
  })
}

class Proc {
  readonly child: ChildProcess
  output = ''
  exited: { code: number | null, signal: NodeJS.Signals | null } | undefined
  private readonly exitPromise: Promise<void>

  constructor (readonly name: string, bin: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    live.add(this)
    const append = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8')
      if (this.output.length > LOG_LIMIT) this.output = this.output.slice(-LOG_LIMIT)
    }
    this.child.stdout?.on('data', append)
    this.child.stderr?.on('data', append)
    this.exitPromise = new Promise((resolve) => {
      this.child.once('error', (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'ENOENT' ? ' (install the Debian package "pebble": apt-get install -y pebble)' : ''
        append(Buffer.from(`\n[${name}: ${err.message}${hint}]\n`))
        this.exited ??= { code: null, signal: null }
        live.delete(this)
        resolve()
      })
      this.child.once('exit', (code, signal) => {
        this.exited = { code, signal }
        live.delete(this)
        resolve()
      })
    })
  }

  describe (): string {
    const state = this.exited === undefined ? 'running' : `exited (code ${String(this.exited.code)}, signal ${String(this.exited.signal)})`
    return `--- ${this.name} (${state}) output ---\n${this.output.trimEnd()}\n`
  }

  async stop (): Promise<void> {
    if (this.exited !== undefined) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await this.exitPromise
    clearTimeout(timer)
  }

  killNow (): void {
    if (this.exited === undefined) this.child.kill('SIGKILL')
  }
}

async function startOnce (options: PebbleOptions): Promise<Pebble> {
  cleanUpOnExit()
  const dir = mkdtempSync(join(tmpdir(), 'pebble-test-'))
  liveDirs.add(dir)
  const procs: Proc[] = []
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const p of [...procs].reverse()) await p.stop()
      rmSync(dir, { recursive: true, force: true })
      liveDirs.delete(dir)
    })()
    return stopped
  }
  const logs = (): string => procs.map((p) => p.describe()).join('')

  try {
    const taken = new Set<number>()
    const dnsPort = await freePort(taken, true)
    const ctsMgmtPort = await freePort(taken)
    const acmePort = await freePort(taken)
    const mgmtPort = await freePort(taken)
    const httpPort = options.httpPort ?? await freePort(taken)
    const tlsAlpnPort = options.tlsAlpnPort ?? await freePort(taken)

    // Pebble's HTTPS listener key pair, made now, valid for the addresses we dial.
    const certFile = join(dir, 'listener-cert.pem')
    const keyFile = join(dir, 'listener-key.pem')
    await makeListenerCert(certFile, keyFile)
    const tlsCa = readFileSync(certFile, 'utf8')

    const pebbleConfig: Record<string, unknown> = {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: certFile,
      privateKey: keyFile,
      httpPort,
      tlsPort: tlsAlpnPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: options.eabKeys !== undefined,
    }
    if (options.eabKeys !== undefined) pebbleConfig.externalAccountMACKeys = options.eabKeys
    if (options.domainBlocklist !== undefined) pebbleConfig.domainBlocklist = options.domainBlocklist
    if (options.validityPeriodSeconds !== undefined) {
      if (!Number.isInteger(options.validityPeriodSeconds) || options.validityPeriodSeconds < 1) throw new Error('validityPeriodSeconds must be a positive integer')
      pebbleConfig.certificateValidityPeriod = options.validityPeriodSeconds
    }
    const configFile = join(dir, 'pebble-config.json')
    writeFileSync(configFile, JSON.stringify({ pebble: pebbleConfig }, null, 2))

    // Inherit PATH etc., but no PEBBLE_* from the caller's environment (never PEBBLE_VA_ALWAYS_VALID).
    const baseEnv: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PEBBLE_')) baseEnv[k] = v
    const pebbleEnv: NodeJS.ProcessEnv = {
      ...baseEnv,
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: String(options.nonceRejectPercent ?? 0),
      PEBBLE_AUTHZREUSE: String(options.authzReusePercent ?? 0),
    }
    if (options.chainLength !== undefined) pebbleEnv.PEBBLE_CHAIN_LENGTH = String(options.chainLength)
    if (options.alternateRoots !== undefined) pebbleEnv.PEBBLE_ALTERNATE_ROOTS = String(options.alternateRoots)

    const cts = new Proc('pebble-challtestsrv', CHALLTESTSRV_BIN, [
      '-dns01', `127.0.0.1:${dnsPort}`,
      '-http01', '',
      '-https01', '',
      '-tlsalpn01', '',
      '-management', `127.0.0.1:${ctsMgmtPort}`,
      '-defaultIPv4', '127.0.0.1',
      '-defaultIPv6', '',
    ], baseEnv)
    procs.push(cts)
    const pebbleProc = new Proc('pebble', PEBBLE_BIN, ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], pebbleEnv)
    procs.push(pebbleProc)

    const challtestsrvUrl = `http://127.0.0.1:${ctsMgmtPort}`
    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`
    const managementUrl = `https://127.0.0.1:${mgmtPort}`
    const agent = new HttpsAgent({ ca: tlsCa, keepAlive: false })

    const resolver = new dns.Resolver({ timeout: 250, tries: 1 })
    resolver.setServers([`127.0.0.1:${dnsPort}`])
    await waitFor('pebble-challtestsrv DNS and management API', procs, logs, async () => {
      // Any HTTP answer (404 for GET /) means the management API is up; the A answer means DNS is.
      await httpGet(`${challtestsrvUrl}/`)
      const a = await resolver.resolve4('readiness.pebble.test')
      if (!a.includes('127.0.0.1')) throw new Error(`challtestsrv answered A ${a.join(',')}`)
    })
    resolver.cancel()
    await waitFor('pebble directory and management API', procs, logs, async () => {
      const res = await httpGet(directoryUrl, agent)
      if (res.status !== 200 || !res.body.includes('newOrder')) throw new Error(`directory answered ${res.status}`)
      const roots = await httpGet(`${managementUrl}/roots/0`, agent)
      if (roots.status !== 200) throw new Error(`/roots/0 answered ${roots.status}`)
    })

    const caBundle = await pebbleRoots(managementUrl, tlsCa, options.alternateRoots ?? 0)
    const intermediates = await pebbleIntermediates(managementUrl, tlsCa, options.alternateRoots ?? 0)

    const challtestsrv = async (path: string, body: unknown): Promise<void> => {
      const res = await httpPost(`${challtestsrvUrl}${path}`, JSON.stringify(body))
      if (res.status !== 200) throw new Error(`challtestsrv ${path} answered ${res.status}: ${res.body}`)
    }
    const fqdn = (host: string): string => host.endsWith('.') ? host : `${host}.`

    return {
      directoryUrl,
      managementUrl,
      challtestsrvUrl,
      caBundle,
      intermediates,
      tlsCa,
      dnsPort,
      httpPort,
      tlsAlpnPort,
      httpsPort: tlsAlpnPort,
      ...(options.validityPeriodSeconds !== undefined ? { validityPeriodSeconds: options.validityPeriodSeconds } : {}),
      setTxt: (host, value) => challtestsrv('/set-txt', { host: fqdn(host), value }),
      clearTxt: (host) => challtestsrv('/clear-txt', { host: fqdn(host) }),
      challtestsrv,
      management: async (path) => {
        const res = await httpGet(`${managementUrl}${path}`, agent)
        if (res.status !== 200) throw new Error(`pebble management ${path} answered ${res.status}: ${res.body}`)
        try { return JSON.parse(res.body) as unknown } catch { return res.body }
      },
      logs,
      stop,
    }
  } catch (err) {
    const output = logs()
    await stop()
    if (/address already in use/i.test(output)) throw new PortRaceError(`${(err as Error).message}\n${output}`)
    throw err
  }
}

/** GET Pebble's current root(s) from the management API: /roots/0 (and /roots/1.. for alternate chains). */
export async function pebbleRoots (managementUrl: string, tlsCa: string, alternateRoots = 0): Promise<string> {
  return await fetchPems(managementUrl, tlsCa, 'roots', alternateRoots)
}

/** GET Pebble's current intermediate(s) from the management API: /intermediates/0 (..). */
export async function pebbleIntermediates (managementUrl: string, tlsCa: string, alternateRoots = 0): Promise<string> {
  return await fetchPems(managementUrl, tlsCa, 'intermediates', alternateRoots)
}

async function fetchPems (managementUrl: string, tlsCa: string, kind: string, alternateRoots: number): Promise<string> {
  const agent = new HttpsAgent({ ca: tlsCa, keepAlive: false })
  const pems: string[] = []
  for (let i = 0; i <= alternateRoots; i++) {
    const res = await httpGet(`${managementUrl}/${kind}/${i}`, agent)
    if (res.status !== 200 || !res.body.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`pebble /${kind}/${i} answered ${res.status}: ${res.body}`)
    pems.push(res.body.trim() + '\n')
  }
  return pems.join('')
}

/** The structural part of an axios instance that `trustPebbleInAcmeClient` needs (acme-client's `acme.axios`). */
export interface AxiosLike<C> {
  interceptors: { request: { use: (onFulfilled: (config: C) => C) => number, eject: (id: number) => void } }
}
export interface AxiosRequestConfigLike { url?: string | undefined, baseURL?: string | undefined, httpsAgent?: unknown, proxy?: unknown }

/**
 * Make acme-client trust Pebble's HTTPS listener, for requests to this Pebble's origin only.
 * acme-client 5 has no per-client CA / agent option: every request goes through the module-wide
 * axios instance it exports as `acme.axios`. This adds a request interceptor to it that gives
 * requests to Pebble's origin an https.Agent with `ca: tlsCa` (and no proxy); other requests are
 * untouched, and several Pebbles can coexist. Returns an undo function (also run on `t.teardown`
 * when `t` is given). Usage: `trustPebbleInAcmeClient(acme.axios, pebble, t)`.
 */
export function trustPebbleInAcmeClient<C extends AxiosRequestConfigLike> (axios: AxiosLike<C>, pebble: Pick<Pebble, 'directoryUrl' | 'tlsCa'>, t?: Teardown): () => void {
  const origin = new URL(pebble.directoryUrl).origin
  const agent = new HttpsAgent({ ca: pebble.tlsCa })
  const id = axios.interceptors.request.use((config) => {
    let requestOrigin: string | undefined
    try { requestOrigin = new URL(config.url ?? '', config.baseURL).origin } catch { requestOrigin = undefined }
    if (requestOrigin === origin) {
      config.httpsAgent = agent
      config.proxy = false
    }
    return config
  })
  let undone = false
  const undo = (): void => {
    if (undone) return
    undone = true
    axios.interceptors.request.eject(id)
    agent.destroy()
  }
  t?.teardown(undo)
  return undo
}

async function makeListenerCert (certFile: string, keyFile: string): Promise<void> {
  try {
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '2',
      '-subj', '/CN=Pebble test listener',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ])
  } catch (err) {
    const e = err as Error & { stderr?: string }
    throw new Error(`openssl could not make Pebble's listener certificate: ${e.message}\n${e.stderr ?? ''}`)
  }
}

/** A loopback port that was free a moment ago (TCP, and UDP too when `udp`); never one already in `taken`. */
async function freePort (taken: Set<number>, udp = false): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address()
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0
        srv.close(() => resolve(p))
      })
    })
    if (port === 0 || taken.has(port)) continue
    if (udp && !await udpFree(port)) continue
    taken.add(port)
    return port
  }
  throw new Error('could not find a free loopback port')
}

function udpFree (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createSocket('udp4')
    sock.once('error', () => { sock.close(); resolve(false) })
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)))
  })
}

async function waitFor (what: string, procs: Proc[], logs: () => string, probe: () => Promise<void>): Promise<void> {
  let last: unknown
  for (let i = 0; i < READY_ATTEMPTS; i++) {
    const dead = procs.find((p) => p.exited !== undefined)
    if (dead !== undefined) throw new Error(`${dead.name} exited before ${what} was ready\n${logs()}`)
    // challtestsrv logs a failed DNS bind and keeps running: don't wait out the attempts for it.
    const clash = procs.find((p) => /address already in use/i.test(p.output))
    if (clash !== undefined) throw new Error(`${clash.name} could not bind a port\n${logs()}`)
    try {
      await probe()
      return
    } catch (err) {
      last = err
    }
    await new Promise((resolve) => setTimeout(resolve, READY_INTERVAL_MS))
  }
  throw new Error(`${what} not ready after ${READY_ATTEMPTS} attempts: ${String((last as Error | undefined)?.message ?? last)}\n${logs()}`)
}

interface SimpleResponse { status: number, body: string }

function httpGet (url: string, agent?: HttpsAgent): Promise<SimpleResponse> {
  return send(url, 'GET', undefined, agent)
}

function httpPost (url: string, body: string): Promise<SimpleResponse> {
  return send(url, 'POST', body)
}

function send (url: string, method: string, body: string | undefined, agent?: HttpsAgent): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const headers: Record<string, string | number> = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    }
    const req = u.protocol === 'https:'
      ? httpsRequest(u, { method, headers, agent, timeout: 5000 }, onResponse)
      : httpRequest(u, { method, headers, timeout: 5000 }, onResponse)
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}
