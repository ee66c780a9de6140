import type { FastifyInstance } from 'fastify'
import { requestsPerMinuteOf } from '../usage/rate-limits.js'

/** GET /v1/me/limits: the caller's requests-per-minute limit, token quotas and running chats. */
export default async function limitRoutes (app: FastifyInstance): Promise<void> {
  const { gateway } = app
  const { quotas } = gateway
  app.get('/v1/me/limits', async (request) => {
    const { sub, role, keyLimits } = request.principal
    return {
      user: sub,
      role,
      requestsPerMinute: requestsPerMinuteOf(gateway.config.limits, request.principal),
      ...(keyLimits?.requestsPerMinute !== undefined && { keyRequestsPerMinute: keyLimits.requestsPerMinute }),
      quotas: await quotas.status(request.principal),
    }
  })
}
