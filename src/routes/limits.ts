import type { FastifyInstance } from 'fastify'

/** GET /v1/me/limits: the caller's requests-per-minute limit, token quotas and running chats. */
export default async function limitRoutes (app: FastifyInstance): Promise<void> {
  const { config, quotas } = app.gateway
  app.get('/v1/me/limits', async (request) => {
    const { sub, role, keyLimits } = request.principal
    return {
      user: sub,
      role,
      requestsPerMinute: config.limits.users[sub]?.requestsPerMinute ?? config.limits.requestsPerMinute[role],
      ...(keyLimits?.requestsPerMinute !== undefined && { keyRequestsPerMinute: keyLimits.requestsPerMinute }),
      quotas: await quotas.status(request.principal),
    }
  })
}
