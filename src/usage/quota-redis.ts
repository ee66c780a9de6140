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
// script call (redis-batch.ts): each set of counters once, `<counter> <t|s> …#<limit>
// <resetsAt> …`, then each request, `<h|s><spent> <id> <tokens> <set number>`.
// Redis runs each script's commands for it, and a `redis.call` costs more than most commands
// here, as does Lua's pattern matching: the script reads every counter it touches with one MGET,
// works out holds and settles in Lua, and writes each changed key once, so a call costs about
// the same commands for one request as for fifty of one caller. Needs Redis 6.2 (ZMSCORE);
// standalone (the keys are derived in the script, as Redis Cluster would not allow).

const CHANGE = `
local now, holdMs, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local holds = prefix .. 'q:holds'

-- A command on many keys or members, a few hundred at a time (Lua's unpack has a limit); 'key'
-- comes first when given.
local function in_chunks (command, key, list)
  local out = {}
  for first = 1, #list, 500 do
    local last = math.min(first + 499, #list)
    local part
    if key then part = redis.call(command, key, unpack(list, first, last))
    else part = redis.call(command, unpack(list, first, last)) end
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end

-- Every counter the call touches, by key: read with one MGET, changed here, written back once.
local counters, touched = {}, {}
local function counter_of (key, kind)
  local c = counters[key]
  if c == nil then
    local used = prefix .. 'q:' .. key
    c = { used = used, sum = used .. ':s', tokens = kind == 't', reset = 0 }
    counters[key] = c
    touched[#touched + 1] = c
  end
  return c
end

local function amount (c, tokens)
  if c.tokens then return tokens end
  return 1
end

-- The counter sets of this call's requests, each '<key> <t|s> …#<limit> <resetsAt> …'.
local sets, first_item = {}, 5 + tonumber(ARGV[4])
for s = 5, first_item - 1 do
  local keys, limits = string.match(ARGV[s], '^([^#]*)#(.*)$')
  local list = {}
  for key, kind in string.gmatch(keys, '(%S+) (%a)') do list[#list + 1] = { c = counter_of(key, kind) } end
  local i = 0
  for limit, reset in string.gmatch(limits, '(%d+) (%d+)') do
    i = i + 1
    list[i].limit = tonumber(limit)
    if reset ~= '0' then list[i].c.reset = tonumber(reset) end
  end
  sets[#sets + 1] = { keys = keys, list = list }
end

-- Holds that lapsed (a dead replica's, or a chat that outlived holdMs) are given back first.
local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
local given_back = {}
for _, member in ipairs(lapsed) do
  local tokens, keys = string.match(member, '^%S+ (%d+)|(.*)$')
  for key, kind in string.gmatch(keys, '(%S+) (%a)') do
    local c = counter_of(key, kind)
    given_back[#given_back + 1] = { c = c, amount = amount(c, tonumber(tokens)) }
  end
end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end

-- The requests, each '<h|s><spent> <id> <tokens> <set>'. A settle's hold is still in the set
-- unless it lapsed and was given back already.
local requests, settling = {}, {}
for r = first_item, #ARGV do
  local kind, spent, id, tokens, set = string.match(ARGV[r], '^(%a)(%d+) (%S+) (%d+) (%d+)$')
  local request = { hold = kind == 'h', spent = tonumber(spent), tokens = tonumber(tokens), set = sets[tonumber(set)] }
  request.member = id .. ' ' .. tokens .. '|' .. request.set.keys
  requests[#requests + 1] = request
  if not request.hold then settling[#settling + 1] = request.member end
end
local still_held = {}
local scores = in_chunks('ZMSCORE', holds, settling)
for i, member in ipairs(settling) do still_held[member] = scores[i] ~= false end

local names = {}
for _, c in ipairs(touched) do
  names[#names + 1] = c.used
  names[#names + 1] = c.sum
end
local values = in_chunks('MGET', false, names)
for i, c in ipairs(touched) do
  c.had_used, c.had_sum = values[2 * i - 1] ~= false, values[2 * i] ~= false
  c.u, c.s = tonumber(values[2 * i - 1] or '0'), tonumber(values[2 * i] or '0')
end

-- A sum that expired meanwhile (a stream counter's lives as long as a hold) does not go negative.
local function release (c, n)
  c.s = math.max(c.s - n, 0)
  c.sum_changed = true
end
for _, g in ipairs(given_back) do release(g.c, g.amount) end

-- Holds answer 0 and the room left on each counter, or the refusing counter (1-based) and what
-- it held, padded to the same width. Settles (the tokens used after the tokens held) answer
-- nothing. Requests are handled in the order they came.
local out, removed, added = {}, {}, {}
for _, request in ipairs(requests) do
  local list = request.set.list
  if not request.hold then
    if still_held[request.member] then
      removed[#removed + 1] = request.member
      for _, e in ipairs(list) do release(e.c, amount(e.c, request.tokens)) end
    end
    if request.spent > 0 then
      for _, e in ipairs(list) do
        if e.c.tokens then
          e.c.u = e.c.u + request.spent
          e.c.used_changed = true
        end
      end
    end
  else
    local refused = 0
    for j, e in ipairs(list) do
      if e.c.u + e.c.s + amount(e.c, request.tokens) > e.limit then
        refused = j
        break
      end
    end
    if refused > 0 then
      local c = list[refused].c
      out[#out + 1] = refused
      out[#out + 1] = c.u + c.s
      for j = 2, #list do out[#out + 1] = 0 end
    else
      out[#out + 1] = 0
      for _, e in ipairs(list) do
        local n = amount(e.c, request.tokens)
        e.c.s = e.c.s + n
        e.c.sum_changed = true
        e.c.held = true
        out[#out + 1] = e.limit - e.c.u - e.c.s
      end
      added[#added + 1] = now + holdMs
      added[#added + 1] = request.member
    end
  end
end
in_chunks('ZREM', holds, removed)
in_chunks('ZADD', holds, added)

-- Used tokens live to a day after their window ends, from their first settle on; a token
-- counter's sum as long, from its first hold on; a stream counter's sum as long as a hold can,
-- from its latest.
local function ttl (c)
  if c.reset == 0 then return holdMs end
  return math.max(math.max(c.reset - now, 0) + 86400000, holdMs)
end
-- As integers: Lua would write large numbers in exponent form.
local function int (n) return string.format('%d', n) end
for _, c in ipairs(touched) do
  if c.used_changed then
    if c.had_used then redis.call('SET', c.used, int(c.u), 'KEEPTTL')
    else redis.call('SET', c.used, int(c.u), 'PX', ttl(c)) end
  end
  if c.sum_changed then
    if c.s <= 0 then
      if c.had_sum then redis.call('DEL', c.sum) end
    elseif c.had_sum and not (c.held and not c.tokens) then redis.call('SET', c.sum, int(c.s), 'KEEPTTL')
    else redis.call('SET', c.sum, int(c.s), 'PX', ttl(c)) end
  end
end
return out
`

type Script = (...args: Array<string | number>) => Promise<number[]>

/** A hold (with an answer of `width` values) or a settle (none) of one request. */
interface Change { head: string, counters: string, width: number }

export class RedisQuotaStore implements QuotaStore {
  private readonly changes: TickBatch<Change, Reserved | Refused | undefined>
  /** A caller's counters as the script takes them, by counters array (Quotas reuses one per caller and day). */
  private readonly specs = new WeakMap<Counter[], string>()

  constructor (private readonly redis: Redis, private readonly prefix: string, private readonly holdMs: number) {
    redis.defineCommand('chatgateQuota', { lua: CHANGE, numberOfKeys: 0 })
    const script = (redis as unknown as { chatgateQuota: Script }).chatgateQuota
    this.changes = new TickBatch<Change, Reserved | Refused | undefined>(
      (changes) => ({ keys: [], args: this.argsOf(changes), width: (c) => c.width }),
      (_keys, args) => script.call(redis, ...args),
      (change, values) => change.width === 0 ? undefined
        : values[0] === 0 ? { ok: true, remaining: values.slice(1) } : { ok: false, index: values[0]! - 1, held: values[1]! })
  }

  /** The script's arguments: each counter set once, then each request naming its set by number. */
  private argsOf (changes: Change[]): Array<string | number> {
    const sets = new Map<string, number>()
    const requests: string[] = []
    for (const change of changes) {
      let set = sets.get(change.counters)
      if (set === undefined) {
        set = sets.size + 1
        sets.set(change.counters, set)
      }
      requests.push(`${change.head} ${set}`)
    }
    return [Date.now(), this.holdMs, this.prefix, sets.size, ...sets.keys(), ...requests]
  }

  /** `<key> <t|s> …#<limit> <resetsAt> …`; a settle's keys must be its hold's, to the byte. */
  private countersSpec (counters: Counter[]): string {
    let spec = this.specs.get(counters)
    if (spec === undefined) {
      spec = `${counters.map((c) => `${c.key} ${c.kind === 'tokens' ? 't' : 's'}`).join(' ')}#${counters.map((c) => `${c.limit} ${c.resetsAt ?? 0}`).join(' ')}`
      this.specs.set(counters, spec)
    }
    return spec
  }

  reserve (id: string, counters: Counter[], tokens: number): Promise<Reserved | Refused> {
    // A hold has a width, so its answer is never the settles' undefined.
    return this.changes.add({ head: `h0 ${id} ${tokens}`, counters: this.countersSpec(counters), width: 1 + counters.length }) as Promise<Reserved | Refused>
  }

  async settle (id: string, counters: Counter[], tokens: number, spent: number): Promise<void> {
    await this.changes.add({ head: `s${spent} ${id} ${tokens}`, counters: this.countersSpec(counters), width: 0 })
  }

  async read (counters: Counter[]): Promise<Array<{ used: number, held: number }>> {
    if (counters.length === 0) return []
    const values = await this.redis.mget(counters.flatMap((c) => [`${this.prefix}q:${c.key}`, `${this.prefix}q:${c.key}:s`]))
    return counters.map((_, i) => ({ used: Number(values[2 * i] ?? 0), held: Number(values[2 * i + 1] ?? 0) }))
  }

  async close (): Promise<void> {}
}
