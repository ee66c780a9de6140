import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { loadConfig } from './config/load.js'

/** Loads the config, builds the gateway and listens; SIGTERM/SIGINT close it gracefully. */
export async function serve (configPath: string): Promise<FastifyInstance> {
  const config = loadConfig(configPath)
  const app = await buildApp(config)
  await app.listen({ host: config.server.host, port: config.server.port })
  app.log.info({ config: configPath, backends: config.backends.map((b) => `${b.name} (${b.type})`) }, 'chatgate ready')

  let closing = false
  const stop = (signal: string): void => {
    // A second signal means "now".
    if (closing) process.exit(1)
    closing = true
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'error while shutting down')
      process.exit(1)
    })
  }
  // SIGHUP re-reads certificate files (tls.mode: manual).
  process.on('SIGHUP', () => { app.tls?.certificates.reload() })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  return app
}
