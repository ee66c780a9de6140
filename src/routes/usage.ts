import type { FastifyInstance } from 'fastify'

// STUB — to be replaced: GET /admin/usage and GET /v1/me/usage.
export default async function usageRoutes (_app: FastifyInstance): Promise<void> {}
