import type { FastifyInstance } from 'fastify'
import { GatewayError, errorBody } from '../errors.js'
import { requireAdmin } from './guards.js'

/**
 * POST /admin/reload: reads the config file again and swaps it in, as SIGHUP does. 200 with what
 * changed; 422 with every problem of an invalid file, the running config left as it was.
 */
export default async function reloadRoutes (app: FastifyInstance): Promise<void> {
  app.post('/admin/reload', async (request, reply) => {
    requireAdmin(request, 'reloading the config')
    const result = await app.reloadConfig('api')
    if (result.ok) return result
    const refusal = new GatewayError(422, `config not reloaded; the running config stays: ${result.problems.join('; ')}`, 'invalid_config')
    return reply.code(422).send({ ...errorBody('openai', refusal), reload: result })
  })
}
