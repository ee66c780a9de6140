import { randomUUID } from 'node:crypto'
import type { FastifyReply } from 'fastify'
import type { Principal } from '../auth/jwt.js'
import type { Config } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import type { ChatRecord } from '../relay/usage.js'
import { anyQuota, countersFor, windowsAt, type Counter } from './quota-counters.js'
import { amountOn, type QuotaStore, type Refused, type Reserved } from './quota-store.js'

// Token quotas and concurrent chats. Before the call a request holds an estimate (prompt
// estimate + its max_tokens, or limits.completionEstimate) on every counter that applies, all
// or none; after it, the hold is replaced by the tokens really used, or dropped when nothing
// was produced. So concurrent requests never spend the same tokens twice.

export interface QuotaStatus { limit: string, kind: 'tokens' | 'streams', max: number, used: number, held: number, remaining: number, resetsAt?: string }

/** A request's hold on its counters, to settle once its usage is known. */
export interface Hold {
  settle: (record: ChatRecord) => void | Promise<void>
}

class StoreHold implements Hold {
  constructor (private readonly quotas: Quotas, private readonly id: string, private readonly counters: Counter[], private readonly estimate: number) {}

  settle (record: ChatRecord): void | Promise<void> {
    return this.quotas.release(this.id, this.counters, this.estimate, record)
  }
}

function inWords (ms: number): string {
  const minutes = Math.ceil(ms / 60_000)
  if (minutes < 60) return `${minutes} min`
  const hours = Math.floor(minutes / 60)
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.ceil(hours / 24)} days`
}

function refusal (counter: Counter, held: number, amount: number, now: number): GatewayError {
  if (counter.kind === 'streams') {
    const busy = new GatewayError(429, `too many requests at once: ${counter.label} allows ${counter.limit}; retry when one has finished`, 'rate_limit_exceeded', 1)
    busy.limit = 'concurrency'
    return busy
  }
  const wait = counter.resetsAt! - now
  const retryAfter = Math.ceil(wait / 1000)
  const message = amount > counter.limit
    ? `token quota exceeded: this request may use up to ${amount} tokens, more than the whole quota of ${counter.limit} ${counter.label}; ask for fewer tokens (max_tokens / num_predict)`
    : `token quota exceeded: ${counter.label} is ${counter.limit}; ${held} used or held by running requests, this request may use up to ${amount}; resets in ${inWords(wait)}`
  const spent = new GatewayError(429, message, 'insufficient_quota', retryAfter)
  spent.quotaLimit = counter.limit
  spent.limit = 'quota'
  return spent
}

export class Quotas {
  private configured: boolean
  // Hold ids: unique across replicas (Redis keeps them) without a random UUID per request.
  private readonly idPrefix = `${randomUUID()}-`
  private holds = 0
  /**
   * Counters by caller, until the day's window ends (their keys and labels name the window). A
   * caller's principal object is reused from request to request (authentication keeps it).
   */
  private counters = new WeakMap<Principal, { counters: Counter[], until: number }>()
  /** Settles still on their way to the store (Redis): close waits for them, so none is cut off. */
  private readonly settling = new Set<Promise<void>>()

  /** `failed` says what a store error means (Redis down): a refusal, or undefined to let the request through. */
  constructor (
    private limits: Config['limits'],
    private readonly store: QuotaStore,
    private readonly failed: (err: unknown) => GatewayError | undefined,
  ) {
    this.configured = anyQuota(limits)
  }

  /**
   * Reloaded limits, for requests from now on. Holds already taken settle on the counters they
   * were taken on; the counts themselves live in the store and carry over.
   */
  setLimits (limits: Config['limits']): void {
    this.limits = limits
    this.configured = anyQuota(limits)
    this.counters = new WeakMap()
  }

  private countersOf (principal: Principal, now: number): Counter[] {
    const known = this.counters.get(principal)
    if (known !== undefined && now < known.until) return known.counters
    const counters = countersFor(this.limits, principal, now)
    this.counters.set(principal, { counters, until: windowsAt(now).dayEnd })
    return counters
  }

  /** The completion tokens a request may produce, for its reservation. */
  completionBound (maxTokens: number | undefined): number {
    return maxTokens ?? this.limits.completionEstimate
  }

  /**
   * Holds `estimate` tokens (and one running chat) for the caller, or throws the 429 naming the
   * limit. Sets the x-ratelimit-*-tokens headers. Undefined: no quota applies. A promise only
   * when the store is remote (Redis).
   */
  hold (principal: Principal, estimate: number, reply: FastifyReply): Hold | undefined | Promise<Hold | undefined> {
    if (!this.configured && principal.keyLimits === undefined) return undefined
    const now = Date.now()
    const counters = this.countersOf(principal, now)
    if (counters.length === 0) return undefined
    const id = `${this.idPrefix}${++this.holds}`
    const held = (answer: Reserved | Refused): Hold => {
      if (!answer.ok) throw refusal(counters[answer.index]!, answer.held, amountOn(counters[answer.index]!, estimate), now)
      this.tokenHeaders(reply, counters, answer.remaining, now)
      return new StoreHold(this, id, counters, estimate)
    }
    const unavailable = (err: unknown): undefined => {
      const refused = this.failed(err)
      if (refused !== undefined) throw refused
      return undefined
    }
    let answer
    try {
      answer = this.store.reserve(id, counters, estimate)
    } catch (err) {
      return unavailable(err)
    }
    return answer instanceof Promise ? answer.then(held, unavailable) : held(answer)
  }

  /** Replaces a hold by what the request used; a store failure is logged, the hold then lapses. */
  release (id: string, counters: Counter[], estimate: number, record: ChatRecord): void | Promise<void> {
    const spent = this.spent(record)
    try {
      const done = this.store.settle(id, counters, estimate, spent)
      if (done instanceof Promise) {
        const tracked: Promise<void> = done.catch((err: unknown) => { this.failed(err) })
          .finally(() => { this.settling.delete(tracked) })
        this.settling.add(tracked)
        return tracked
      }
    } catch (err) {
      this.failed(err)
    }
  }

  /** Tokens to charge: what the record says was used (see `partialUsage` for a stream the client left). */
  private spent (record: ChatRecord): number {
    return record.usage === undefined ? 0 : record.usage.promptTokens + record.usage.completionTokens
  }

  /** The tightest token counter, as OpenAI names its headers. */
  private tokenHeaders (reply: FastifyReply, counters: Counter[], remaining: number[], now: number): void {
    let tightest = -1
    counters.forEach((c, i) => {
      if (c.kind === 'tokens' && (tightest < 0 || remaining[i]! < remaining[tightest]!)) tightest = i
    })
    if (tightest < 0) return
    const counter = counters[tightest]!
    reply.header('x-ratelimit-limit-tokens', counter.limit)
    reply.header('x-ratelimit-remaining-tokens', Math.max(0, remaining[tightest]!))
    reply.header('x-ratelimit-reset-tokens', `${Math.ceil((counter.resetsAt! - now) / 1000)}s`)
  }

  /** The caller's token quotas and running chats: limit, used, held by running requests, when each resets. */
  async status (principal: Principal): Promise<QuotaStatus[]> {
    const now = Date.now()
    const counters = countersFor(this.limits, principal, now)
    let read
    try {
      read = await this.store.read(counters)
    } catch (err) {
      throw this.failed(err) ?? new GatewayError(503, 'limits store (Redis) unreachable', 'limits_unavailable', 1)
    }
    return counters.map((c, i) => ({
      limit: c.label,
      kind: c.kind,
      max: c.limit,
      used: read[i]!.used,
      held: read[i]!.held,
      remaining: Math.max(0, c.limit - read[i]!.used - read[i]!.held),
      ...(c.resetsAt !== undefined && { resetsAt: new Date(c.resetsAt).toISOString() }),
    }))
  }

  /**
   * After the server has stopped: a request whose answer has gone out may still be settling its
   * hold (and only then records its usage); wait for those before the store goes.
   */
  async close (): Promise<void> {
    await Promise.all(this.settling)
    await this.store.close()
  }
}
