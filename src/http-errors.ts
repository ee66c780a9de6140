import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, errorBody, surfaceOf } from './errors.js'

/** Fastify's own errors (validation, body parsing, limits) in words a caller can act on. */
function toGatewayError (err: FastifyError): GatewayError {
  if (err instanceof GatewayError) return err
  if (err.validation !== undefined) {
    const where = err.validationContext ?? 'body'
    const first = err.validation[0]
    const path = first?.instancePath ? `${where}${first.instancePath.replace(/\//g, '.')}` : where
    const missing = first?.keyword === 'required' ? `${where}.${String(first.params.missingProperty)} is required` : undefined
    return new GatewayError(400, `invalid request: ${missing ?? `${path} ${first?.message ?? 'is invalid'}`}`, 'invalid_request')
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return new GatewayError(413, 'request body is larger than the configured server.bodyLimit', 'request_too_large')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return new GatewayError(400, 'missing request body', 'invalid_request')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new GatewayError(415, 'send the body as application/json', 'unsupported_media_type')
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return new GatewayError(400, 'malformed JSON body', 'invalid_json')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return new GatewayError(400, 'content-length does not match the body', 'invalid_request')
  }
  if (err.statusCode === 400 && err instanceof SyntaxError) return new GatewayError(400, `malformed JSON body: ${err.message}`, 'invalid_json')
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return new GatewayError(err.statusCode, err.message)
  return new GatewayError(500, 'internal gateway error', 'internal_error')
}

export function send (request: FastifyRequest, reply: FastifyReply, error: GatewayError): FastifyReply {
  request.refusedBy = error.limit
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds))
  return reply.code(error.statusCode === 499 ? 400 : error.statusCode).type('application/json; charset=utf-8').send(errorBody(surfaceOf(request.url), error))
}

/** A route's error as the gateway answers it; one that is not ChatGate's own refusal is logged. */
export function caughtError (err: FastifyError, request: FastifyRequest): GatewayError {
  const error = toGatewayError(err)
  if (error.statusCode >= 500 && !(err instanceof GatewayError)) request.log.error({ err }, 'unhandled error')
  return error
}

export function installErrorHandlers (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => send(request, reply, caughtError(err, request)))
  app.setNotFoundHandler((request, reply) =>
    send(request, reply, new GatewayError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'route_not_found')))
}
