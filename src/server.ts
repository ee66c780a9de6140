import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { loadConfig } from './config/load.js'

/** Loads the config, builds the gateway and listens; SIGTERM/SIGINT close it gracefully. */
export async function serve (configPath: string): Promise<FastifyInstance> {
  const config = loadConfig(configPath)
  const app = await buildApp(config, { configFile: configPath })
  await app.listen({ host: config.server.host, port: config.server.port })
  app.log.info({ config: configPath, backends: config.backends.map((b) => `${b.name} (${b.type})`) }, 'chatgate ready')

  let closing = false
  const stop = (signal: string): void => {
    // A second signal means "now".
    if (closing) process.exit(1)
    closing = true
    const graceMs = app.gateway.config.server.shutdownGraceMs
    app.log.info({ signal, graceMs }, 'shutting down: no new connections; open streams may finish')
    // Streams still open when the grace period ends are cut off; their usage is still recorded.
    setTimeout(() => {
      app.log.warn({ graceMs }, 'grace period over: closing the streams still open')
      app.closeAllConnections()
    }, graceMs).unref()
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'error while shutting down')
      process.exit(1)
    })
  }
  // SIGHUP reloads the config and re-reads certificate files (tls.mode: manual).
  process.on('SIGHUP', () => {
    app.reloadConfig('signal').catch((err: unknown) => { app.log.error({ err }, 'config reload failed') })
    app.tls?.certificates.reload()
  })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  return app
}
