import type { FastifyInstance } from 'fastify'

// STUB — to be replaced: /admin/users.
export default async function userRoutes (_app: FastifyInstance): Promise<void> {}
