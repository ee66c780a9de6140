import type { ModelAccess } from './auth/access.js'
import type { ApiKeys } from './auth/api-keys.js'
import type { Pool } from './backends/pool.js'
import type { Config } from './config/schema.js'
import type { RelayOptions } from './relay/chat.js'

/** What routes need from the running gateway. */
export interface Gateway {
  config: Config
  pool: Pool
  access: ModelAccess
  relay: RelayOptions
  keys: ApiKeys
}

declare module 'fastify' {
  interface FastifyInstance { gateway: Gateway }
}
