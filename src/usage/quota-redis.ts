import type { Redis } from 'ioredis'
import type { Counter } from './quota-counters.js'
import type { QuotaStore, Refused, Reserved } from './quota-store.js'
import { TickBatch } from './redis-batch.js'

// Counters in Redis, shared by every replica. Each counter is two keys: what was used (settled)
// and the sum of the holds of running requests. The holds themselves are one sorted set for all
// counters, each member a request (`<id> <tokens>|<counter> <t|s> …`, what it holds where) scored
// by when it lapses: a replica that died does not block a quota for good. A script checks and
// holds every counter of a request at once, atomic against every other replica. Everything
// requests ask of Redis in one turn of the event loop, holds and settles alike, goes in one
// script call (redis-batch.ts), each request one argument:
// `<h|s><spent> <member>#<limit> <resetsAt> …`, its counters parts built once per caller.
// Redis runs each script's commands for it (a `redis.call` costs more than most commands here),
// so the layout keeps them few: one or two per counter, and a read and a sorted-set change per
// request. Standalone Redis (the keys are derived in the script, as Redis Cluster would not allow).

const CHANGE = `
local now, holdMs, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local holds = prefix .. 'q:holds'

local function counters_of (member)
  local tokens, keys = string.match(member, '^%S+ (%d+)|(.*)$')
  tokens = tonumber(tokens)
  local list = {}
  for key, kind in string.gmatch(keys, '(%S+) (%a)') do
    local used = prefix .. 'q:' .. key
    list[#list + 1] = { used = used, sum = used .. ':s', tokens = kind == 't', amount = kind == 't' and tokens or 1 }
  end
  return list
end

-- A sum that expired meanwhile (a stream counter's lives as long as a hold) is not brought back
-- as a negative number.
local function release (c)
  if redis.call('DECRBY', c.sum, c.amount) < 0 then redis.call('DEL', c.sum) end
end

local function ttl (reset)
  if reset == 0 then return holdMs end
  return math.max(reset - now, 0) + 86400000
end

-- Holds that lapsed (a dead replica's, or a chat that outlived holdMs) are given back first.
local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
if #lapsed > 0 then
  for _, member in ipairs(lapsed) do
    for _, c in ipairs(counters_of(member)) do release(c) end
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
end

-- Holds answer 0 and the room left on each counter, or the refusing counter (1-based) and what
-- it held, padded to the same width. Settles (the tokens used after the tokens held) answer
-- nothing. Requests are handled in the order they came.
local out = {}
for r = 4, #ARGV do
  local kind, spent, member, limits = string.match(ARGV[r], '^(%a)(%d+) ([^#]*)#(.*)$')
  local counters = counters_of(member)
  local i = 0
  for limit, reset in string.gmatch(limits, '(%d+) (%d+)') do
    i = i + 1
    counters[i].limit = tonumber(limit)
    counters[i].reset = tonumber(reset)
  end
  if kind == 's' then
    -- Gone from the set: it lapsed and was given back already.
    if redis.call('ZREM', holds, member) == 1 then
      for _, c in ipairs(counters) do release(c) end
    end
    spent = tonumber(spent)
    if spent > 0 then
      for _, c in ipairs(counters) do
        if c.tokens and redis.call('INCRBY', c.used, spent) == spent then redis.call('PEXPIRE', c.used, ttl(c.reset)) end
      end
    end
  else
    local keys = {}
    for j, c in ipairs(counters) do
      keys[2 * j - 1] = c.used
      keys[2 * j] = c.sum
    end
    local values = redis.call('MGET', unpack(keys))
    local held, refused = {}, 0
    for j, c in ipairs(counters) do
      held[j] = tonumber(values[2 * j - 1] or '0') + tonumber(values[2 * j] or '0')
      if refused == 0 and held[j] + c.amount > c.limit then refused = j end
    end
    if refused > 0 then
      out[#out + 1] = refused
      out[#out + 1] = held[refused]
      for j = 2, #counters do out[#out + 1] = 0 end
    else
      out[#out + 1] = 0
      for j, c in ipairs(counters) do
        -- A token counter's sum lives to the end of its window, from its first hold on; a
        -- stream counter's as long as a hold can, from its latest.
        if redis.call('INCRBY', c.sum, c.amount) == c.amount or not c.tokens then
          redis.call('PEXPIRE', c.sum, math.max(ttl(c.reset), holdMs))
        end
        out[#out + 1] = c.limit - held[j] - c.amount
      end
      redis.call('ZADD', holds, now + holdMs, member)
    end
  end
end
return out
`

type Script = (...args: Array<string | number>) => Promise<number[]>

interface Change { spec: string, width: number }

/** A caller's counters as a spec names them: where they are, and their limits. */
interface CountersSpec { keys: string, limits: string }

export class RedisQuotaStore implements QuotaStore {
  private readonly changes: TickBatch<Change, Reserved | Refused | undefined>
  /** By counters array (Quotas reuses one per caller and day). */
  private readonly specs = new WeakMap<Counter[], CountersSpec>()

  constructor (private readonly redis: Redis, private readonly prefix: string, private readonly holdMs: number) {
    redis.defineCommand('chatgateQuota', { lua: CHANGE, numberOfKeys: 0 })
    const script = (redis as unknown as { chatgateQuota: Script }).chatgateQuota
    this.changes = new TickBatch<Change, Reserved | Refused | undefined>(
      (changes) => ({ keys: [], args: [Date.now(), this.holdMs, this.prefix, ...changes.map((c) => c.spec)], width: (c) => c.width }),
      (_keys, args) => script.call(redis, ...args),
      (change, values) => change.width === 0 ? undefined
        : values[0] === 0 ? { ok: true, remaining: values.slice(1) } : { ok: false, index: values[0]! - 1, held: values[1]! })
  }

  /** A hold or settle as the script takes it; a settle's member must be its hold's, to the byte. */
  private spec (kind: 'h' | 's', spent: number, id: string, counters: Counter[], tokens: number): string {
    let spec = this.specs.get(counters)
    if (spec === undefined) {
      spec = {
        keys: counters.map((c) => `${c.key} ${c.kind === 'tokens' ? 't' : 's'}`).join(' '),
        limits: counters.map((c) => `${c.limit} ${c.resetsAt ?? 0}`).join(' '),
      }
      this.specs.set(counters, spec)
    }
    return `${kind}${spent} ${id} ${tokens}|${spec.keys}#${spec.limits}`
  }

  reserve (id: string, counters: Counter[], tokens: number): Promise<Reserved | Refused> {
    // A hold has a width, so its answer is never the settles' undefined.
    return this.changes.add({ spec: this.spec('h', 0, id, counters, tokens), width: 1 + counters.length }) as Promise<Reserved | Refused>
  }

  async settle (id: string, counters: Counter[], tokens: number, spent: number): Promise<void> {
    await this.changes.add({ spec: this.spec('s', spent, id, counters, tokens), width: 0 })
  }

  async read (counters: Counter[]): Promise<Array<{ used: number, held: number }>> {
    if (counters.length === 0) return []
    const values = await this.redis.mget(counters.flatMap((c) => [`${this.prefix}q:${c.key}`, `${this.prefix}q:${c.key}:s`]))
    return counters.map((_, i) => ({ used: Number(values[2 * i] ?? 0), held: Number(values[2 * i + 1] ?? 0) }))
  }

  async close (): Promise<void> {}
}
