import type { ModelAccess } from '../auth/access.js'
import type { Principal } from '../auth/jwt.js'
import type { Pool } from '../backends/pool.js'
import { GatewayError } from '../errors.js'

/** The model a request really asks for (aliases resolved), if the caller's role may use it. */
export function resolveModel (pool: Pool, access: ModelAccess, principal: Principal, requested: string): string {
  const model = pool.resolveAlias(requested)
  if (!access.allows(principal, model)) {
    const who = principal.keyId === undefined ? `role '${principal.role}'` : 'this API key'
    throw new GatewayError(403, `model '${requested}' is not available to ${who}`, 'model_not_allowed')
  }
  return model
}
