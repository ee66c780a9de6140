import type { FastifyInstance } from 'fastify'

/** Liveness: the process answers. Unauthenticated and cheap, for container health checks. */
export default async function healthRoutes (app: FastifyInstance): Promise<void> {
  app.get('/healthz', { config: { public: true, rateLimit: false } }, async () => ({ status: 'ok' }))
}
