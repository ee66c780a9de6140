import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { RedisConfig } from '../config/schema.js'
import { GatewayError } from '../errors.js'

// The Redis connection that limits share across replicas. Commands fail at once while it is
// down (no offline queue, a command timeout) so that a request is never held waiting for Redis:
// it is refused or let through, as store.redis.onError says, and the log says which.

const WARN_EVERY_MS = 10_000

export interface SharedRedis {
  client: Redis
  config: RedisConfig
  /** What a failed Redis command means for the request: a 503 (closed) or nothing (open). */
  failed: (err: unknown) => GatewayError | undefined
  close: () => Promise<void>
}

export async function connectRedis (config: RedisConfig, log: FastifyBaseLogger): Promise<SharedRedis> {
  const options = {
    enableOfflineQueue: false,
    // Commands issued in the same tick go out in one write: under load, most of them.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    connectTimeout: config.connectTimeoutMs,
    commandTimeout: config.connectTimeoutMs,
    lazyConnect: true,
  }
  // unix:///run/redis/redis.sock: a socket on this host.
  const client = config.url.startsWith('unix://') ? new Redis({ ...options, path: config.url.slice('unix://'.length) }) : new Redis(config.url, options)
  let lastWarning = 0
  const warn = (err: unknown): void => {
    const now = Date.now()
    if (now - lastWarning < WARN_EVERY_MS) return
    lastWarning = now
    const effect = config.onError === 'closed' ? 'limited requests are refused (store.redis.onError: closed)' : 'limits are NOT enforced (store.redis.onError: open)'
    log.error({ err: { message: (err as Error).message } }, `Redis unreachable: ${effect}`)
  }
  // ioredis reconnects by itself; each failed attempt is an 'error' event.
  client.on('error', warn)
  client.on('ready', () => {
    if (lastWarning !== 0) log.info('Redis reachable again: limits enforced')
    lastWarning = 0
  })
  try {
    await client.connect()
  } catch (err) {
    // Serve anyway: requests follow onError until Redis comes up.
    warn(err)
  }
  return {
    client,
    config,
    failed: (err) => {
      warn(err)
      return config.onError === 'closed' ? new GatewayError(503, 'limits store (Redis) unreachable: request refused', 'limits_unavailable', 1) : undefined
    },
    close: async () => {
      client.disconnect()
    },
  }
}

type RedisStoreClass = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore

/**
 * @fastify/rate-limit's own Redis store, with its errors turned into what onError says: the
 * plugin would otherwise answer a Redis outage with a 500 (or, with skipOnError, say nothing).
 */
export function guardedRateLimitStore (redis: SharedRedis): FastifyRateLimitStoreCtor {
  const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as RedisStoreClass
  const guard = (inner: FastifyRateLimitStore): FastifyRateLimitStore => ({
    incr: (key, cb, timeWindow, max) => {
      inner.incr(key, (err, res) => {
        if (err === null) return cb(null, res)
        const refusal = redis.failed(err)
        // Let through: the first request of a window.
        if (refusal === undefined) cb(null, { current: 0, ttl: timeWindow })
        else cb(refusal)
      }, timeWindow, max)
    },
    child: (options) => guard(inner.child(options)),
  })
  return class {
    // The plugin passes its settings; these two shape the store's script.
    constructor (options: { continueExceeding?: boolean, exponentialBackoff?: boolean }) {
      return guard(new RedisStore(options.continueExceeding === true, options.exponentialBackoff === true, redis.client, `${redis.config.keyPrefix}rl:`))
    }
  } as unknown as FastifyRateLimitStoreCtor
}
