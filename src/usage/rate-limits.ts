import rateLimit, { normalizeIP, type RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { Principal } from '../auth/jwt.js'
import type { Config } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { redisRateLimitStore, type SharedRedis } from './redis.js'

// Requests per minute with @fastify/rate-limit: per user (by role, or the user's own override)
// for every authenticated route, and per API key for keys that carry their own limit. Counts
// live in this process, or in Redis to be shared by replicas.

const WINDOW_MS = 60_000

declare module 'fastify' {
  /** The count of an API key's own requests-per-minute limit, from its start to its check. */
  interface FastifyRequest { keyCount: ReturnType<ReturnType<FastifyInstance['createRateLimit']>> | undefined }
}

/** A user's requests per minute: their own override, else their role's (0: no limit). */
export function requestsPerMinuteOf (limits: Config['limits'], principal: Principal): number {
  return limits.users[principal.sub]?.requestsPerMinute ?? limits.requestsPerMinute[principal.role]
}

/** A refusal by a requests-per-minute limit (the metrics count it as one). */
function rateLimited (message: string, retryAfterSeconds: number): GatewayError {
  const error = new GatewayError(429, message, 'rate_limit_exceeded', retryAfterSeconds)
  error.limit = 'rate'
  return error
}

/**
 * A route's own limit per client address (login, refresh, sign-in). Counted before the body is
 * even parsed: every attempt costs, well-formed or not. The answer is built here: these callers
 * have no principal for the global limit's message to name. An IPv6 client is counted by its /64
 * (one subscriber's network: otherwise each of its 2^64 addresses would bring a fresh allowance
 * of password guesses), an IPv4-mapped address (::ffff:a.b.c.d) as the IPv4 address.
 */
export function perClientIp (max: number, bucket: string): RateLimitOptions {
  return {
    hook: 'onRequest',
    max,
    timeWindow: WINDOW_MS,
    keyGenerator: (request) => `${bucket}:${normalizeIP(request.ip)}`,
    errorResponseBuilder: (_request, context) => rateLimited(
      `rate limit exceeded: ${context.max} ${bucket} attempts per minute from this client; retry in ${context.after}`, Math.ceil(context.ttl / 1000)),
  }
}

export async function registerRateLimits (app: FastifyInstance, redis: SharedRedis | undefined): Promise<void> {
  // The running config's limits, read per request: a reload changes them at once.
  const { gateway } = app
  const perUser = (request: FastifyRequest): number => requestsPerMinuteOf(gateway.config.limits, request.principal) || Number.MAX_SAFE_INTEGER
  await app.register(rateLimit, {
    global: true,
    // Counted on arrival (authentication is an earlier onRequest hook): a request over the limit
    // is refused before its body is read, and every answer, a 400 too, carries the headers.
    hook: 'onRequest',
    timeWindow: WINDOW_MS,
    ...(redis !== undefined && { store: redisRateLimitStore(redis) }),
    // Public routes are not counted per user (login and refresh have their own per-IP limits,
    // whose keys are never empty).
    // An array, not a function: the plugin awaits a function's answer on every request.
    allowList: [''],
    keyGenerator: (request) => request.principal?.sub ?? '',
    max: perUser,
    errorResponseBuilder: (request, context) => rateLimited(
      `rate limit exceeded: ${context.max} requests per minute for ${request.principal === null ? 'this client' : `user '${request.principal.sub}'`}; retry in ${context.after}`,
      Math.ceil(context.ttl / 1000)),
  })

  // A key's own limit is counted beside the user's: started before the user's count, so that
  // with Redis both go in one call, and read after it, so that its headers replace the user's
  // when tighter.
  const perKey = app.createRateLimit({
    timeWindow: WINDOW_MS,
    keyGenerator: (request) => `key:${request.principal.keyId!}`,
    max: (request) => request.principal.keyLimits!.requestsPerMinute!,
    // Only keyed requests get here, whose keys are never empty: the global allow-list has nothing to do.
    allowList: undefined,
  })
  // On the request itself: a WeakMap lookup on every request (most have no key limit) cost more.
  app.decorateRequest('keyCount', undefined)
  const startKeyCount: onRequestHookHandler = (request, _reply, done) => {
    const own = request.principal?.keyLimits?.requestsPerMinute
    if (own !== undefined && own > 0) {
      const count = perKey(request)
      // Read by finishKeyCount; a request refused by the user's limit never gets there.
      count.catch(() => {})
      request.keyCount = count
    }
    done()
  }
  const finishKeyCount: onRequestHookHandler = (request, reply, done) => {
    const count = request.keyCount
    if (count === undefined) return done()
    count.then((result) => {
      if (!('isExceeded' in result)) return done()
      if (result.isExceeded) {
        return done(rateLimited(`rate limit exceeded: ${result.max} requests per minute for API key ${request.principal.keyId!}; retry in ${result.ttlInSeconds} s`, result.ttlInSeconds))
      }
      if (result.remaining < remainingOf(reply)) {
        reply.header('x-ratelimit-limit', result.max)
        reply.header('x-ratelimit-remaining', result.remaining)
        reply.header('x-ratelimit-reset', result.ttlInSeconds)
      }
      done()
    }, done)
  }
  app.addHook('onRoute', (route) => {
    if (route.config?.public === true) return
    const hooks = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [startKeyCount, ...hooks, finishKeyCount]
  })
}

function remainingOf (reply: FastifyReply): number {
  const header = reply.getHeader('x-ratelimit-remaining')
  return header === undefined ? Number.MAX_SAFE_INTEGER : Number(header)
}
