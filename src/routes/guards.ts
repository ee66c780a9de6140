import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../errors.js'

// Checks that the management routes (/admin/keys, /admin/users, /v1/me/keys) share.

/** 403 unless the caller is an admin; `what` completes "… is for admins only". */
export function requireAdmin (request: FastifyRequest, what: string): void {
  if (request.principal.role !== 'admin') throw new GatewayError(403, `${what} is for admins only`, 'permission_denied')
}

/**
 * 403 when the caller uses an API key: credentials and accounts are managed from a login (or
 * `chatgate token`) token, so a program's key, if leaked, cannot mint keys or change users.
 */
export function requireLogin (request: FastifyRequest, what: string): void {
  if (request.principal.keyId !== undefined) throw new GatewayError(403, `${what} are managed with a login token, not with an API key`, 'permission_denied')
}
