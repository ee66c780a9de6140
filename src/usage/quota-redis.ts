import type { Redis } from 'ioredis'
import type { Counter } from './quota-counters.js'
import type { QuotaStore, Refused, Reserved } from './quota-store.js'

// Counters in Redis, shared by every replica. Each counter is three keys: what was used
// (settled), the holds of running requests (a sorted set of `id:amount` scored by when the hold
// lapses) and their sum. One Lua script checks and holds every counter of a request atomically;
// holds of a replica that died lapse after `holdMs` instead of blocking the quota for good.

const RESERVE = `
local now, deadline, id, n = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local held = {}
for i = 1, n do
  local used, holds, sum = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #lapsed > 0 then
    local drop = 0
    for _, member in ipairs(lapsed) do drop = drop + tonumber(string.match(member, ':(%d+)$')) end
    redis.call('DECRBY', sum, drop)
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
  held[i] = tonumber(redis.call('GET', used) or '0') + tonumber(redis.call('GET', sum) or '0')
  local limit, amount = tonumber(ARGV[3*i+2]), tonumber(ARGV[3*i+3])
  if held[i] + amount > limit then return {i, held[i]} end
end
local remaining = {0}
for i = 1, n do
  local used, holds, sum = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local limit, amount, ttl = tonumber(ARGV[3*i+2]), tonumber(ARGV[3*i+3]), ARGV[3*i+4]
  redis.call('ZADD', holds, deadline, id .. ':' .. amount)
  redis.call('INCRBY', sum, amount)
  redis.call('PEXPIRE', holds, ttl)
  redis.call('PEXPIRE', sum, ttl)
  remaining[i + 1] = limit - held[i] - amount
end
return remaining
`

const SETTLE = `
local id, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local used, holds, sum = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local amount, spent, ttl = ARGV[3*i], tonumber(ARGV[3*i+1]), ARGV[3*i+2]
  if redis.call('ZREM', holds, id .. ':' .. amount) == 1 then redis.call('DECRBY', sum, amount) end
  if spent > 0 then
    redis.call('INCRBY', used, spent)
    redis.call('PEXPIRE', used, ttl)
  end
end
return 0
`

interface Scripts {
  chatgateReserve: (...args: Array<string | number>) => Promise<number[]>
  chatgateSettle: (...args: Array<string | number>) => Promise<number>
}

// A used counter outlives its window by a day (a late settle still finds it); holds and
// stream counters live as long as a hold can.
const DAY_MS = 86_400_000

export class RedisQuotaStore implements QuotaStore {
  private readonly scripts: Scripts

  constructor (private readonly redis: Redis, private readonly prefix: string, private readonly holdMs: number) {
    redis.defineCommand('chatgateReserve', { lua: RESERVE })
    redis.defineCommand('chatgateSettle', { lua: SETTLE })
    this.scripts = redis as unknown as Scripts
  }

  private keys (counters: Counter[]): string[] {
    return counters.flatMap((c) => {
      const base = `${this.prefix}q:${c.key}`
      return [base, `${base}:h`, `${base}:s`]
    })
  }

  private ttl (counter: Counter, now: number): number {
    return counter.resetsAt === undefined ? this.holdMs : Math.max(counter.resetsAt - now, 0) + DAY_MS
  }

  async reserve (id: string, counters: Counter[], amounts: number[]): Promise<Reserved | Refused> {
    const now = Date.now()
    const args = counters.flatMap((c, i) => [c.limit, amounts[i]!, Math.max(this.ttl(c, now), this.holdMs)])
    const answer = await this.scripts.chatgateReserve(counters.length * 3, ...this.keys(counters), now, now + this.holdMs, id, counters.length, ...args)
    if (answer[0] !== 0) return { ok: false, index: answer[0]! - 1, held: answer[1]! }
    return { ok: true, remaining: answer.slice(1) }
  }

  async settle (id: string, counters: Counter[], amounts: number[], used: number[]): Promise<void> {
    const now = Date.now()
    const args = counters.flatMap((c, i) => [amounts[i]!, used[i]!, this.ttl(c, now)])
    await this.scripts.chatgateSettle(counters.length * 3, ...this.keys(counters), id, counters.length, ...args)
  }

  async read (counters: Counter[]): Promise<Array<{ used: number, held: number }>> {
    const values = counters.length === 0 ? [] : await this.redis.mget(this.keys(counters).filter((_, i) => i % 3 !== 1))
    return counters.map((_, i) => ({ used: Number(values[2 * i] ?? 0), held: Number(values[2 * i + 1] ?? 0) }))
  }

  async close (): Promise<void> {}
}
