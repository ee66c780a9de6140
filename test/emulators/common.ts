// Shared machinery for the backend emulators: HTTP server with request recording,
// abort detection, abort-aware timing, Go/Python JSON encoders and the
// deterministic "model" that decides what a reply contains.
import { EventEmitter } from 'node:events'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string | string[] | undefined>
  body: any /* parsed JSON or raw string or undefined */
}

export interface EmulatorMode {
  firstTokenDelayMs?: number
  chunkDelayMs?: number
  busy?: boolean
  rateLimited?: boolean
  failAfterChunks?: number
  dropAfterChunks?: number
  httpError?: { status: number; message: string }
  replyTokens?: string[]
  holdOpen?: boolean
  gate?: Promise<void> // answers wait for it before their first token (tests open it when they choose)
}

// ---------- JSON encoders ----------

/** Go encoding/json output: compact, with <, >, &, U+2028, U+2029 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

/** A number Python holds as a float (printed as `1.0`, not `1`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** Python json.dumps: spaced=true gives the default ", " / ": " separators; ascii=true is ensure_ascii. */
export function pyJson(value: unknown, opts: { spaced: boolean; ascii?: boolean }): string {
  const [itemSep, keySep] = opts.spaced ? [', ', ': '] : [',', ':']
  const str = (s: string): string => {
    const j = JSON.stringify(s)
    return opts.ascii ? j.replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')) : j
  }
  const enc = (v: unknown): string => {
    if (v === null || v === undefined) return 'null'
    if (v instanceof PyFloat) return Number.isInteger(v.value) ? v.value.toFixed(1) : String(v.value)
    if (typeof v === 'string') return str(v)
    if (typeof v === 'number' || typeof v === 'boolean') return String(v)
    if (Array.isArray(v)) return '[' + v.map(enc).join(itemSep) + ']'
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined)
    return '{' + entries.map(([k, x]) => str(k) + keySep + enc(x)).join(itemSep) + '}'
  }
  return enc(value)
}

/** Go time.Time JSON form (RFC3339Nano, UTC, trailing zeros of the fraction trimmed). */
export function goTime(date = new Date()): string {
  const subMs = String(process.hrtime.bigint() % 1_000_000n).padStart(6, '0')
  const frac = (String(date.getUTCMilliseconds()).padStart(3, '0') + subMs).replace(/0+$/, '')
  return date.toISOString().slice(0, 19) + (frac ? '.' + frac : '') + 'Z'
}

// ---------- deterministic model behaviour ----------

export const THINKING_TEXT = 'Let me think.'
export const TOOL_ARGS = { city: 'Tokyo' }

export function wordCount(s: string): number {
  const t = s.trim()
  return t ? t.split(/\s+/).length : 0
}

/** Text and image presence of a message content (string, or OpenAI content parts). */
export function contentOf(content: unknown): { text: string; images: boolean } {
  if (typeof content === 'string') return { text: content, images: false }
  if (!Array.isArray(content)) return { text: '', images: false }
  let text = ''
  let images = false
  for (const part of content) {
    if (part?.type === 'text' && typeof part.text === 'string') text += (text ? ' ' : '') + part.text
    if (part?.type === 'image_url' || part?.type === 'image') images = true
  }
  return { text, images }
}

export interface Generation {
  tokens: string[] // content pieces, one per content chunk (empty when a tool is called)
  evalCount: number // completion tokens
  promptTokens: number
  thinking?: string
  tool?: { name: string; args: Record<string, unknown> }
  finish: 'stop' | 'length'
}

export interface GenerationInput {
  model: string
  texts: string[] // message contents / prompt + system
  images: boolean
  lastUser?: string
  tools?: unknown
  think: boolean
  maxTokens?: unknown
}

export function generate(mode: EmulatorMode, input: GenerationInput): Generation {
  let tokens = [...(mode.replyTokens ?? ['Hello', ' from', ` ${input.model}`, '!'])]
  if (input.images && tokens.length >= 2) tokens[1] = ' image'
  let finish: Generation['finish'] = 'stop'
  if (typeof input.maxTokens === 'number' && input.maxTokens >= 0 && input.maxTokens < tokens.length) {
    tokens = tokens.slice(0, input.maxTokens)
    finish = 'length'
  }
  const promptTokens = Math.max(1, input.texts.reduce((n, t) => n + wordCount(t), 0))
  const gen: Generation = { tokens, evalCount: tokens.length, promptTokens, finish }
  if (input.think) gen.thinking = THINKING_TEXT
  const tools = Array.isArray(input.tools) ? input.tools : []
  const name = tools[0]?.function?.name
  if (typeof name === 'string' && /\bweather\b/i.test(input.lastUser ?? '')) {
    gen.tool = { name, args: { ...TOOL_ARGS } }
    gen.tokens = []
  }
  return gen
}

/** Embedding vector for one input string: [len, words, 0.5, -0.5]. */
export function embeddingOf(s: string): number[] {
  return [s.length, wordCount(s), 0.5, -0.5]
}

// ---------- per-request exchange ----------

export class Exchange {
  closed = false // response finished or connection gone
  dropped = false // we destroyed the socket on purpose
  private waiters = new Set<() => void>()

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly rec: RecordedRequest,
    readonly raw: string,
  ) {}

  get method(): string { return this.rec.method }
  get path(): string { return this.rec.path }

  /** Resolves true after ms, or false as soon as the connection closes (timer cleared). */
  sleep(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false)
    if (ms <= 0) return Promise.resolve(!this.closed)
    return new Promise((resolve) => {
      const wake = (): void => { clearTimeout(timer); this.waiters.delete(wake); resolve(!this.closed) }
      const timer = setTimeout(wake, ms)
      this.waiters.add(wake)
    })
  }

  untilClosed(): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise((resolve) => this.waiters.add(resolve))
  }

  markClosed(): void {
    this.closed = true
    for (const w of [...this.waiters]) w()
    this.waiters.clear()
  }

  /** Whole response with Content-Length. */
  send(status: number, contentType: string | undefined, body: string, extra: Record<string, string> = {}): void {
    if (this.closed || this.res.headersSent) return
    const headers: Record<string, string | number> = { ...extra, 'Content-Length': Buffer.byteLength(body) }
    if (contentType) headers['Content-Type'] = contentType
    this.res.writeHead(status, headers)
    this.res.end(body)
  }

  /** Destroy the connection abruptly. */
  drop(): void {
    this.dropped = true
    this.res.socket?.destroy()
    this.req.socket.destroy()
  }
}

/** One streamed frame; a function is rendered when it is sent (fresh timestamps). */
export type Frame = string | (() => string)

/** A streamed body: frames before content, content frames (counted by the mode), trailing frames. */
export interface StreamPlan {
  headers: Record<string, string>
  flushHeadersFirst?: boolean // Xinference sends its headers before generating
  head: Frame[]
  content: Frame[]
  tail: Frame[]
  errorFrame: Frame
  failBeforeWrite: () => void // failure before any byte was written
}

const render = (f: Frame): string => (typeof f === 'string' ? f : f())

export async function runStream(ex: Exchange, mode: EmulatorMode, plan: StreamPlan): Promise<void> {
  const { res } = ex
  let started = false
  const start = (): void => {
    if (!started) { res.writeHead(200, plan.headers); started = true }
  }
  if (plan.flushHeadersFirst) { start(); res.flushHeaders() }
  if (mode.gate) await mode.gate
  if (!(await ex.sleep(mode.firstTokenDelayMs ?? 0))) return
  const frames = [...plan.head, ...plan.content, ...plan.tail]
  let wrote = false
  for (let i = 0; i <= frames.length; i++) {
    const k = i - plan.head.length // number of content chunks already written
    if (k >= 0 && k <= plan.content.length) {
      if (mode.dropAfterChunks === k) return ex.drop()
      if (mode.failAfterChunks === k) {
        if (!started) return plan.failBeforeWrite()
        res.end(render(plan.errorFrame))
        return
      }
    }
    if (i === frames.length) break
    if (wrote && !(await ex.sleep(mode.chunkDelayMs ?? 0))) return
    if (ex.closed) return // client gone: stop generating
    start()
    res.write(render(frames[i]!))
    wrote = true
    if (mode.holdOpen) return ex.untilClosed()
  }
  start()
  res.end()
}

/** A single (non-streamed) answer under the same mode rules; `chunks` = content chunks it stands for. */
export async function runOnce(ex: Exchange, mode: EmulatorMode, chunks: number, fail: () => void, ok: () => void): Promise<void> {
  if (mode.gate) await mode.gate
  if (!(await ex.sleep(mode.firstTokenDelayMs ?? 0))) return
  if (mode.holdOpen) return ex.untilClosed()
  if (mode.dropAfterChunks !== undefined && mode.dropAfterChunks <= chunks) return ex.drop()
  if (mode.failAfterChunks !== undefined && mode.failAfterChunks <= chunks) return fail()
  ok()
}

// ---------- server ----------

export abstract class EmulatorServer {
  readonly requests: RecordedRequest[] = []
  readonly aborts: RecordedRequest[] = []
  mode: EmulatorMode = {}
  inFlight = 0
  maxInFlight = 0
  private readonly server = http.createServer((req, res) => this.onRequest(req, res))
  private readonly events = new EventEmitter()
  private closing = false
  private baseUrl = ''

  get url(): string { return this.baseUrl }

  /** Requests on these paths count towards inFlight/maxInFlight. */
  protected abstract isInference(path: string): boolean
  protected abstract handle(ex: Exchange): Promise<void>

  protected async listen(): Promise<void> {
    this.events.setMaxListeners(0)
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  waitForAborts(n: number): Promise<void> {
    return this.waitFor(() => this.aborts.length >= n)
  }

  waitForRequests(n: number, path?: string): Promise<void> {
    return this.waitFor(() => this.requests.filter((r) => path === undefined || r.path === path).length >= n)
  }

  private waitFor(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => {
        if (done()) { this.events.off('change', check); resolve() }
      }
      this.events.on('change', check)
    })
  }

  async close(): Promise<void> {
    this.closing = true
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    let ex: Exchange | undefined
    res.on('close', () => {
      if (!ex) return
      const aborted = !res.writableFinished && !ex.dropped && !this.closing
      ex.markClosed()
      if (this.isInference(ex.path)) this.inFlight--
      if (aborted) { this.aborts.push(ex.rec); this.events.emit('change') }
    })
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      let body: any
      if (raw !== '') {
        try { body = JSON.parse(raw) } catch { body = raw }
      }
      const path = new URL(req.url ?? '/', 'http://emulator').pathname
      const rec: RecordedRequest = { method: req.method ?? 'GET', path, headers: { ...req.headers }, body }
      ex = new Exchange(req, res, rec, raw)
      this.requests.push(rec)
      if (res.destroyed) { // client left while the body was arriving
        ex.markClosed()
        if (!this.closing) this.aborts.push(rec)
        this.events.emit('change')
        return
      }
      if (this.isInference(path)) {
        this.inFlight++
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
      }
      this.events.emit('change')
      const current = ex
      this.handle(current).catch((err: unknown) => {
        if (!res.headersSent) current.send(500, 'text/plain; charset=utf-8', String(err))
        else res.destroy()
      })
    })
  }
}
