import type { Redis } from 'ioredis'
import type { Counter } from './quota-counters.js'
import type { QuotaStore, Refused, Reserved } from './quota-store.js'
import { TickBatch } from './redis-batch.js'

// Counters in Redis, shared by every replica. Each counter is three keys: what was used
// (settled), the holds of running requests (a sorted set of `id:amount` scored by when the hold
// lapses) and their sum. A script checks and holds every counter of a request at once, atomic
// against every other replica; holds of a replica that died lapse after `holdMs` instead of
// blocking the quota for good. Everything requests ask of Redis in one turn of the event loop,
// holds and settles alike, goes in one script call (redis-batch.ts), and each request is one
// argument: `<h|s><id> <tokens>[ <spent>]|<counter> <limit> <resetsAt> <t|s> …`, its counters part
// built once per caller. Standalone Redis (the keys are derived in the script, as Redis Cluster
// would not allow).

const PARSE = `
local function parse (spec, prefix)
  local head, rest = string.match(spec, '^([^|]*)|(.*)$')
  local id, tokens, spent = string.match(head, '^(%S+) (%d+) ?(%d*)$')
  local counters = {}
  for key, limit, reset, kind in string.gmatch(rest, '(%S+) (%d+) (%d+) (%a)') do
    local base = prefix .. 'q:' .. key
    counters[#counters + 1] = { used = base, holds = base .. ':h', sum = base .. ':s', limit = tonumber(limit),
      reset = tonumber(reset), amount = kind == 't' and tonumber(tokens) or 1, tokens = kind == 't' }
  end
  return id, counters, tonumber(spent)
end
local function ttl (c, now, holdMs)
  if c.reset == 0 then return holdMs end
  return math.max(c.reset - now, 0) + 86400000
end
`

// Lapsed holds (a dead replica's) are dropped only when they could make a check refuse: a
// counter far from its limit costs no range scan. Returns what was dropped.
const PURGE = `
local function purge (c, now)
  local lapsed = redis.call('ZRANGEBYSCORE', c.holds, '-inf', now)
  if #lapsed == 0 then return 0 end
  local drop = 0
  for _, member in ipairs(lapsed) do drop = drop + tonumber(string.match(member, ':(%d+)$')) end
  redis.call('DECRBY', c.sum, drop)
  redis.call('ZREMRANGEBYSCORE', c.holds, '-inf', now)
  return drop
end
`

// Holds: answers 0 and the room left on each counter, or the refusing counter (1-based) and what
// it held, padded to the same width. Settles (the tokens used after the tokens held) answer
// nothing. Requests are handled in the order they came.
const CHANGE = PARSE + PURGE + `
local now, holdMs, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for r = 4, #ARGV do
  local kind = string.sub(ARGV[r], 1, 1)
  local id, counters, spent = parse(string.sub(ARGV[r], 2), prefix)
  if kind == 's' then
    for _, c in ipairs(counters) do
      if redis.call('ZREM', c.holds, id .. ':' .. c.amount) == 1 then redis.call('DECRBY', c.sum, c.amount) end
      if c.tokens and spent > 0 and redis.call('INCRBY', c.used, spent) == spent then
        redis.call('PEXPIRE', c.used, ttl(c, now, holdMs))
      end
    end
  else
    local held, refused = {}, 0
    for i, c in ipairs(counters) do
      local now_held = redis.call('MGET', c.used, c.sum)
      held[i] = tonumber(now_held[1] or '0') + tonumber(now_held[2] or '0')
      if held[i] + c.amount > c.limit then held[i] = held[i] - purge(c, now) end
      if refused == 0 and held[i] + c.amount > c.limit then refused = i end
    end
    if refused > 0 then
      out[#out + 1] = refused
      out[#out + 1] = held[refused]
      for i = 2, #counters do out[#out + 1] = 0 end
    else
      out[#out + 1] = 0
      for i, c in ipairs(counters) do
        redis.call('ZADD', c.holds, now + holdMs, id .. ':' .. c.amount)
        -- A token counter's keys live to the end of its window, from its first hold on; a
        -- stream counter's as long as a hold can, from its latest.
        if redis.call('INCRBY', c.sum, c.amount) == c.amount or not c.tokens then
          local life = math.max(ttl(c, now, holdMs), holdMs)
          redis.call('PEXPIRE', c.holds, life)
          redis.call('PEXPIRE', c.sum, life)
        end
        out[#out + 1] = c.limit - held[i] - c.amount
      end
    end
  end
end
return out
`

type Script = (...args: Array<string | number>) => Promise<number[]>

interface Change { spec: string, width: number }

export class RedisQuotaStore implements QuotaStore {
  private readonly changes: TickBatch<Change, Reserved | Refused | undefined>
  /** The counters part of a spec, by counters array (Quotas reuses one per caller and day). */
  private readonly specs = new WeakMap<Counter[], string>()

  constructor (private readonly redis: Redis, private readonly prefix: string, private readonly holdMs: number) {
    redis.defineCommand('chatgateQuota', { lua: CHANGE, numberOfKeys: 0 })
    const script = (redis as unknown as { chatgateQuota: Script }).chatgateQuota
    this.changes = new TickBatch<Change, Reserved | Refused | undefined>(
      (changes) => ({ keys: [], args: [Date.now(), this.holdMs, this.prefix, ...changes.map((c) => c.spec)], width: (c) => c.width }),
      (_keys, args) => script.call(redis, ...args),
      (change, values) => change.width === 0 ? undefined
        : values[0] === 0 ? { ok: true, remaining: values.slice(1) } : { ok: false, index: values[0]! - 1, held: values[1]! })
  }

  private countersSpec (counters: Counter[]): string {
    let spec = this.specs.get(counters)
    if (spec === undefined) {
      spec = counters.map((c) => `${c.key} ${c.limit} ${c.resetsAt ?? 0} ${c.kind === 'tokens' ? 't' : 's'}`).join(' ')
      this.specs.set(counters, spec)
    }
    return spec
  }

  reserve (id: string, counters: Counter[], tokens: number): Promise<Reserved | Refused> {
    // A hold has a width, so its answer is never the settles' undefined.
    return this.changes.add({ spec: `h${id} ${tokens}|${this.countersSpec(counters)}`, width: 1 + counters.length }) as Promise<Reserved | Refused>
  }

  async settle (id: string, counters: Counter[], tokens: number, spent: number): Promise<void> {
    await this.changes.add({ spec: `s${id} ${tokens} ${spent}|${this.countersSpec(counters)}`, width: 0 })
  }

  async read (counters: Counter[]): Promise<Array<{ used: number, held: number }>> {
    if (counters.length === 0) return []
    const values = await this.redis.mget(counters.flatMap((c) => [`${this.prefix}q:${c.key}`, `${this.prefix}q:${c.key}:s`]))
    return counters.map((_, i) => ({ used: Number(values[2 * i] ?? 0), held: Number(values[2 * i + 1] ?? 0) }))
  }

  async close (): Promise<void> {}
}
