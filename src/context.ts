import type { ModelAccess } from './auth/access.js'
import type { ApiKeys } from './auth/api-keys.js'
import type { ExternalSignIn } from './auth/external/sign-in.js'
import type { Sessions } from './auth/sessions.js'
import type { Users } from './auth/users.js'
import type { Pool } from './backends/pool.js'
import type { Config } from './config/schema.js'
import type { RelayOptions } from './relay/chat.js'
import type { Db } from './store/database.js'
import type { Quotas } from './usage/quotas.js'
import type { UsageLog } from './usage/usage-log.js'

/** What routes need from the running gateway. */
export interface Gateway {
  config: Config
  pool: Pool
  access: ModelAccess
  relay: RelayOptions
  db: Db
  keys: ApiKeys
  users: Users
  sessions: Sessions
  /** Sign-in through identity providers (OIDC, GitHub) on the login page. */
  signIn: ExternalSignIn
  usage: UsageLog
  quotas: Quotas
}

declare module 'fastify' {
  interface FastifyInstance { gateway: Gateway }
}
