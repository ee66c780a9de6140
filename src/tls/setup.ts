import type { Server } from 'node:http'
import type { Server as TlsServer } from 'node:tls'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Config } from '../config/schema.js'
import { Certificates } from './certificates.js'
import { startHttpListener } from './http-listener.js'

declare module 'fastify' {
  interface FastifyInstance { tls: { certificates: Certificates, httpListener: Server } | undefined }
}

// TLS 1.2 and 1.3 only. For 1.2, Mozilla's "intermediate" ciphers: forward secrecy and AEAD only.
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305', 'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384',
].join(':')

const PROTOCOLS = { minVersion: 'TLSv1.2', ciphers: TLS12_CIPHERS } as const

/** Fastify options for HTTPS: HTTP/2 with HTTP/1.1 for clients that do not offer h2 (ALPN). */
export function httpsOptions (certificates: Certificates): Partial<FastifyServerOptions> {
  return {
    http2: true,
    https: { allowHTTP1: true, SNICallback: certificates.sniCallback, ...PROTOCOLS },
  } as unknown as Partial<FastifyServerOptions>
}

/**
 * Brings HTTPS up on a built app: the HTTP listener first (HTTP-01 needs it), then the
 * certificates (loaded, generated or ordered), HSTS when enabled, and their teardown on close.
 */
export async function setupTls (app: FastifyInstance, config: Config, certificates: Certificates): Promise<void> {
  certificates.setLogger(app.log.child({ module: 'tls' }))
  const httpsPort = (): number => {
    const address = app.server.address()
    return typeof address === 'object' && address !== null ? address.port : config.server.port
  }
  const httpListener = await startHttpListener(config.server.host, config.tls.httpPort, httpsPort, certificates.storage, app.log)
  app.decorate('tls', { certificates, httpListener })
  app.addHook('onClose', async () => {
    certificates.close()
    httpListener.closeAllConnections()
    await new Promise((resolve) => httpListener.close(resolve))
  })
  // Clients that send no server name (a probe or curl by IP address) get the first certificate:
  // the SNI callback is only asked when there is a name.
  certificates.onDefaultChange = (pair) => { (app.server as unknown as TlsServer).setSecureContext({ key: pair.key, cert: pair.cert, ...PROTOCOLS }) }
  const hsts = config.tls.hsts
  if (hsts.enabled) {
    const value = `max-age=${hsts.maxAge}${hsts.includeSubDomains ? '; includeSubDomains' : ''}`
    app.addHook('onRequest', (_request, reply, done) => {
      reply.header('strict-transport-security', value)
      done()
    })
  }
  await certificates.start()
}
