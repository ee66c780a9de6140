import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { GatewayError } from '../errors.js'
import type { GatewayMetrics } from '../metrics/metrics.js'

// /metrics in Prometheus' text format: on the main port for admins, or, with metrics.listen, on a
// listener of its own without credentials (for a scraper on a private network) and not on the
// main port at all.

declare module 'fastify' {
  interface FastifyInstance {
    /** With metrics.listen: where /metrics is served. */
    metricsUrl: string | undefined
  }
}

// Not encapsulated (fastify-plugin): metricsUrl is the gateway's own.
export default fp(async function metricsRoutes (app: FastifyInstance, opts: { metrics: GatewayMetrics }): Promise<void> {
  const { registry } = opts.metrics
  const { listen } = app.gateway.config.metrics
  app.decorate('metricsUrl', undefined)
  if (listen === undefined) {
    app.get('/metrics', { config: { rateLimit: false } }, async (request, reply) => {
      if (request.principal.role !== 'admin') throw new GatewayError(403, '/metrics is for admins (or set metrics.listen to serve it on a port of its own)', 'permission_denied')
      return reply.type(registry.contentType).send(await registry.metrics())
    })
    return
  }
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n')
      return
    }
    registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        app.log.error({ err }, 'metrics failed')
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n')
      })
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(listen.port, listen.host, resolve))
  const address = server.address() as AddressInfo
  app.metricsUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`
  app.addHook('onClose', async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
}, { name: 'chatgate-metrics' })
