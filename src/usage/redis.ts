import { Redis, ReplyError } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { RedisConfig } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import { TickBatch } from './redis-batch.js'

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
    maxRetriesPerRequest: 0,
    connectTimeout: config.connectTimeoutMs,
    commandTimeout: config.connectTimeoutMs,
    lazyConnect: true,
  }
  // unix:///run/redis/redis.sock: a socket on this host.
  const client = config.url.startsWith('unix://') ? new Redis({ ...options, path: config.url.slice('unix://'.length) }) : new Redis(config.url, options)
  let lastWarning = 0
  let unreachable = false
  // Redis answering with an error (a key of the wrong type under keyPrefix, a Redis too old for
  // a command) is no outage: the log says which, so that an admin looks in the right place.
  const answeredWithError = (err: unknown): boolean => err instanceof ReplyError
  const warn = (err: unknown): void => {
    const answered = answeredWithError(err)
    if (!answered) unreachable = true
    const now = Date.now()
    if (now - lastWarning < WARN_EVERY_MS) return
    lastWarning = now
    const effect = config.onError === 'closed' ? 'limited requests are refused (store.redis.onError: closed)' : 'limits are NOT enforced (store.redis.onError: open)'
    log.error({ err: { message: (err as Error).message } }, `${answered ? 'Redis answered a limits command with an error' : 'Redis unreachable'}: ${effect}`)
  }
  // ioredis reconnects by itself; each failed attempt is an 'error' event.
  client.on('error', warn)
  client.on('ready', () => {
    if (unreachable) log.info('Redis reachable again: limits enforced')
    unreachable = false
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
      if (config.onError === 'open') return undefined
      return new GatewayError(503, `limits store (Redis) ${answeredWithError(err) ? 'failed' : 'unreachable'}: request refused`, 'limits_unavailable', 1)
    },
    close: async () => {
      client.disconnect()
    },
  }
}

// One INCR a key, the window's expiry set by its first request: what @fastify/rate-limit's own
// Redis store does (without its backoff options, unused here), for many keys in one call.
const INCR = `
local out = {}
for i = 1, #KEYS do
  local current = redis.call('INCR', KEYS[i])
  local ttl = tonumber(ARGV[i])
  if current == 1 then redis.call('PEXPIRE', KEYS[i], ttl) else ttl = redis.call('PTTL', KEYS[i]) end
  out[2*i - 1] = current
  out[2*i] = ttl
end
return out
`

interface Count { key: string, timeWindow: number }

/**
 * A store for @fastify/rate-limit in Redis: the counts of requests arriving together go in one
 * script call, and a Redis failure is what store.redis.onError says (a 503, or the request let
 * through) instead of the plugin's 500.
 */
export function redisRateLimitStore (redis: SharedRedis): FastifyRateLimitStoreCtor {
  redis.client.defineCommand('chatgateCount', { lua: INCR })
  const count = (redis.client as unknown as { chatgateCount: (...args: Array<string | number>) => Promise<number[]> }).chatgateCount
  const batch = new TickBatch<Count, { current: number, ttl: number }>(
    (items) => ({ keys: items.map((i) => i.key), args: items.map((i) => i.timeWindow), width: () => 2 }),
    (keys, args) => count.call(redis.client, keys.length, ...keys, ...args),
    (_item, [current, ttl]) => ({ current: current!, ttl: ttl! }))
  const store = (prefix: string): FastifyRateLimitStore => ({
    incr: (key, cb, timeWindow) => {
      batch.add({ key: prefix + key, timeWindow }).then((res) => cb(null, res), (err: unknown) => {
        const refusal = redis.failed(err)
        // Let through: as the first request of a window.
        if (refusal === undefined) cb(null, { current: 0, ttl: timeWindow })
        else cb(refusal)
      })
    },
    // Routes with their own limit (login) and the per-key limiter count apart; the plugin passes
    // its merged settings, with the route in routeInfo (empty for the per-key limiter).
    child: (options) => {
      const route = (options as unknown as { routeInfo: { method?: string, url?: string } }).routeInfo
      return store(`${prefix}${String(route.method ?? '')}${route.url ?? ''}-`)
    },
  })
  return class {
    constructor () {
      return store(`${redis.config.keyPrefix}rl:`)
    }
  } as unknown as FastifyRateLimitStoreCtor
}
