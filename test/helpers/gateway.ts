import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { buildApp } from '../../src/app.js'
import { validateConfig } from '../../src/config/load.js'
import type { Config, Role } from '../../src/config/schema.js'

export interface TestBackend { name: string, type: 'ollama' | 'xinference' | 'openai', url: string, maxConcurrent?: number, apiKey?: string }

export interface Gateway {
  app: FastifyInstance
  config: Config
  url: string
  token: (role?: Role, sub?: string) => string
  auth: (role?: Role, sub?: string) => { authorization: string }
}

interface Teardown { teardown: (fn: () => unknown) => void }

/**
 * A real ChatGate listening on a free loopback port, over the given backends, with discovery
 * done before it returns. `extra` is merged into the config (raw YAML shape).
 */
export async function startGateway (t: Teardown, backends: TestBackend[], extra: Record<string, unknown> = {}, options: { logStream?: DestinationStream } = {}): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-test-'))
  const raw = {
    server: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    ...extra,
    // Each gateway its own store unless the test names one: never the working directory's data/.
    store: { dir, ...(extra.store as object | undefined) },
    routing: { discoveryIntervalMs: 60_000, ...(extra.routing as object | undefined) },
    backends,
  }
  const config = validateConfig(raw)
  const app = await buildApp(config, { discovery: false, ...options })
  await app.listen({ host: '127.0.0.1', port: 0 })
  await app.gateway.pool.refresh()
  t.teardown(async () => {
    await app.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const token = (role: Role = 'user', sub = role === 'admin' ? 'root' : 'alice'): string => app.issueToken(sub, role, 3600).token
  // With TLS on, clients give the certificate's name as SNI (servername) themselves.
  const url = `${app.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`
  return { app, config, url, token, auth: (role, sub) => ({ authorization: `Bearer ${token(role, sub)}` }) }
}
