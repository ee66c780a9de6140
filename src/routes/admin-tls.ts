import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../errors.js'

/** Admins see every certificate's names, expiry, planned renewal and last failure. */
export default async function adminTlsRoutes (app: FastifyInstance): Promise<void> {
  app.get('/admin/tls', async (request) => {
    if (request.principal.role !== 'admin') throw new GatewayError(403, '/admin/tls is for admins only', 'permission_denied')
    return { mode: app.gateway.config.tls.mode, certificates: app.tls?.certificates.status() ?? [] }
  })
}
