// Ollama emulator: native /api/* (NDJSON) and the OpenAI-compatible /v1/* routes of
// current master, byte-compatible with the Go server (gin + encoding/json).
import { createHash } from 'node:crypto'
import {
  EmulatorServer, type Exchange, type Frame, type Generation, contentOf, embeddingOf, generate, goJson, goTime,
  runOnce, runStream, wordCount,
} from './common.js'

export interface OllamaEmulatorOptions {
  models?: string[] // installed, default ['llama3.2:latest']
  loaded?: string[] // in /api/ps, default []
  version?: string // default '0.12.0'
  embeddingModels?: string[] // installed embedding-only models
}

export const OLLAMA_BUSY = 'server busy, please try again.  maximum pending requests exceeded'
export const OLLAMA_STREAM_ERROR = 'an error was encountered while running the model'

const JSON_CT = 'application/json; charset=utf-8' // gin c.JSON
const WRITER_CT = 'application/json' // /v1 writers (json.Encoder, trailing newline)
const NDJSON = { 'Content-Type': 'application/x-ndjson' }
const MODIFIED_AT = '2025-06-01T12:00:00Z'
const MODIFIED_UNIX = Date.parse(MODIFIED_AT) / 1000
const INFERENCE = new Set(['/api/chat', '/api/generate', '/api/embed', '/api/embeddings', '/v1/chat/completions', '/v1/embeddings'])

/** `name` → `name:latest` when no tag is given. */
export function normalizeModel(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1).includes(':') ? name : `${name}:latest`
}
const goQuote = (s: string): string => goJson(s)
const digestOf = (name: string): string => createHash('sha256').update(normalizeModel(name)).digest('hex')
const familyOf = (name: string): string => /^[a-z]+/i.exec(name.slice(name.lastIndexOf('/') + 1))?.[0]?.toLowerCase() ?? 'llama'
const isZeroKeepAlive = (k: unknown): boolean => k === 0 || (typeof k === 'string' && /^0+(ms|s|m|h)?$/.test(k))
const isObject = (b: unknown): b is Record<string, any> => typeof b === 'object' && b !== null && !Array.isArray(b)

/** Go's decode error for a body that is not a JSON object. */
function decodeError(raw: string, goType: string): string {
  try {
    const v: unknown = JSON.parse(raw)
    const kind = Array.isArray(v) ? 'array' : typeof v === 'boolean' ? 'bool' : typeof v
    return `json: cannot unmarshal ${kind} into Go value of type ${goType}`
  } catch {
    const c = raw.trim()[0] ?? ''
    return '{["tfn-0123456789'.includes(c) ? 'unexpected EOF' : `invalid character '${c}' looking for beginning of value`
  }
}

export class OllamaEmulator extends EmulatorServer {
  models: string[]
  loaded: string[]
  embeddingModels: string[]
  readonly version: string
  private expiry = new Map<string, number>()
  private completionIds = 0

  private constructor(opts: OllamaEmulatorOptions) {
    super()
    this.embeddingModels = [...(opts.embeddingModels ?? [])]
    this.models = [...(opts.models ?? ['llama3.2:latest'])]
    for (const m of this.embeddingModels) if (!this.installed(m)) this.models.push(m)
    this.loaded = [...(opts.loaded ?? [])]
    this.version = opts.version ?? '0.12.0'
  }

  static async start(opts: OllamaEmulatorOptions = {}): Promise<OllamaEmulator> {
    const emulator = new OllamaEmulator(opts)
    await emulator.listen()
    return emulator
  }

  protected isInference(path: string): boolean { return INFERENCE.has(path) }

  protected async handle(ex: Exchange): Promise<void> {
    const version = (): void => ex.send(200, JSON_CT, goJson({ version: this.version }))
    const tags = (): void => ex.send(200, JSON_CT, goJson({ models: this.models.map((m) => this.tagEntry(m)) }))
    const routes: Record<string, Record<string, () => void | Promise<void>>> = {
      '/': { GET: () => ex.send(200, 'text/plain; charset=utf-8', 'Ollama is running'), HEAD: () => ex.send(200, 'text/plain; charset=utf-8', 'Ollama is running') },
      '/api/version': { GET: version, HEAD: version },
      '/api/tags': { GET: tags, HEAD: tags },
      '/api/ps': { GET: () => this.ps(ex) },
      '/api/show': { POST: () => this.show(ex) },
      '/api/chat': { POST: () => this.native(ex, 'chat') },
      '/api/generate': { POST: () => this.native(ex, 'generate') },
      '/api/embed': { POST: () => this.embed(ex, 'embed') },
      '/api/embeddings': { POST: () => this.embed(ex, 'embeddings') },
      '/api/pull': { POST: () => this.manage(ex, 'pull') },
      '/api/create': { POST: () => this.manage(ex, 'create') },
      '/api/delete': { DELETE: () => this.manage(ex, 'delete') },
      '/api/copy': { POST: () => this.manage(ex, 'copy') },
      '/v1/chat/completions': { POST: () => this.openaiChat(ex) },
      '/v1/embeddings': { POST: () => this.embed(ex, 'openai') },
      '/v1/models': { GET: () => this.openaiModels(ex) },
    }
    const route = routes[ex.path] ?? (ex.path.startsWith('/v1/models/') ? { GET: () => this.openaiModels(ex, decodeURIComponent(ex.path.slice(11))) } : undefined)
    if (!route) return ex.send(404, 'text/plain', '404 page not found')
    const fn = route[ex.method]
    if (!fn) return ex.send(405, 'text/plain', '405 method not allowed')
    await fn()
  }

  // ---------- helpers ----------

  private installed(name: string): boolean { return this.models.some((m) => normalizeModel(m) === normalizeModel(name)) }
  private embeddingOnly(name: string): boolean { return this.embeddingModels.some((m) => normalizeModel(m) === normalizeModel(name)) }
  private error(ex: Exchange, status: number, message: string): void { ex.send(status, JSON_CT, goJson({ error: message })) }
  /** OpenAI-format error; viaWriter = produced by the /v1 response writer (newline, plain content type). */
  private oaiError(ex: Exchange, status: number, message: string, viaWriter = true): void {
    const type = status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error'
    const body = goJson({ error: { message, type, param: null, code: null } })
    ex.send(status, viaWriter ? WRITER_CT : JSON_CT, viaWriter ? body + '\n' : body)
  }
  /** Busy / forced error before anything is generated; true when answered. */
  private refused(send: (status: number, message: string) => void): boolean {
    if (this.mode.busy) send(503, OLLAMA_BUSY)
    else if (this.mode.httpError) send(this.mode.httpError.status, this.mode.httpError.message)
    else return false
    return true
  }
  /** Parsed object body, or answers 400 like gin's ShouldBindJSON. */
  private body(ex: Exchange, goType: string, send = (s: number, m: string) => this.error(ex, s, m)): Record<string, any> | undefined {
    if (ex.raw.trim() === '') send(400, goType.startsWith('api.') ? 'missing request body' : 'EOF')
    else if (!isObject(ex.rec.body)) send(400, decodeError(ex.raw, goType))
    else return ex.rec.body
    return undefined
  }
  /** Loads the model as Ollama would; returns true for a cold load. */
  private load(model: string): boolean {
    const name = normalizeModel(model)
    this.expiry.set(name, Date.now() + 5 * 60_000)
    if (this.loaded.some((m) => normalizeModel(m) === name)) return false
    this.loaded.push(name)
    return true
  }
  private unload(model: string): void { this.loaded = this.loaded.filter((m) => normalizeModel(m) !== normalizeModel(model)) }
  private details(name: string): Record<string, unknown> {
    const family = familyOf(name)
    const embed = this.embeddingOnly(name)
    return { parent_model: '', format: 'gguf', family, families: [family], parameter_size: embed ? '137M' : '3.2B', quantization_level: embed ? 'F16' : 'Q4_K_M' }
  }
  private tagEntry(m: string): Record<string, unknown> {
    const size = this.embeddingOnly(m) ? 274302450 : 2019393189
    return { name: m, model: m, modified_at: MODIFIED_AT, size, digest: digestOf(m), details: this.details(m) }
  }
  private metrics(gen: Generation, cold: boolean): Record<string, number> {
    const m: Record<string, number> = {
      total_duration: 0, load_duration: cold ? 1_500_000_000 : 1_000_000, prompt_eval_count: gen.promptTokens,
      prompt_eval_duration: gen.promptTokens * 1_000_000, eval_count: gen.evalCount, eval_duration: gen.evalCount * 10_000_000,
    }
    m.total_duration = m.load_duration! + m.prompt_eval_duration! + m.eval_duration!
    for (const k of Object.keys(m)) if (m[k] === 0) delete m[k] // omitempty
    return m
  }

  // ---------- model management ----------

  private ps(ex: Exchange): void {
    const expiresAt = (m: string): number => this.expiry.get(normalizeModel(m)) ?? Date.now() + 300_000
    const models = [...this.loaded].sort((a, b) => expiresAt(b) - expiresAt(a)).map((m) => {
      const t = this.tagEntry(m)
      return { name: t.name, model: t.model, size: t.size, digest: t.digest, details: t.details, expires_at: goTime(new Date(expiresAt(m))), size_vram: t.size, context_length: 4096 }
    })
    ex.send(200, JSON_CT, goJson({ models }))
  }

  private show(ex: Exchange): void {
    const body = this.body(ex, 'api.ShowRequest')
    if (!body) return
    const name = String(body.model || body.name || '')
    if (!this.installed(name)) return this.error(ex, 404, `model '${name}' not found`)
    const family = familyOf(name)
    ex.send(200, JSON_CT, goJson({
      modelfile: `# Modelfile generated by "ollama show"\nFROM ${normalizeModel(name)}\n`, parameters: 'stop "<|eot_id|>"', template: '{{ .Prompt }}',
      details: this.details(name), model_info: { 'general.architecture': family, 'general.parameter_count': 3212749888, [`${family}.context_length`]: 131072 },
      capabilities: this.embeddingOnly(name) ? ['embedding'] : ['completion', 'tools', 'thinking', 'vision'], modified_at: MODIFIED_AT,
    }))
  }

  private manage(ex: Exchange, op: 'pull' | 'create' | 'delete' | 'copy'): void {
    const body = this.body(ex, `api.${op[0]!.toUpperCase()}${op.slice(1)}Request`)
    if (!body) return
    if (op === 'copy') {
      if (!this.installed(String(body.source ?? ''))) return this.error(ex, 404, `model ${goQuote(String(body.source ?? ''))} not found`)
      if (!this.installed(String(body.destination))) this.models.push(normalizeModel(String(body.destination)))
      return ex.send(200, undefined, '')
    }
    const name = String(body.model || body.name || '')
    if (op === 'delete') {
      if (!this.installed(name)) return this.error(ex, 404, `model '${name}' not found`)
      const other = (m: string): boolean => normalizeModel(m) !== normalizeModel(name)
      this.models = this.models.filter(other)
      this.embeddingModels = this.embeddingModels.filter(other)
      this.loaded = this.loaded.filter(other)
      return ex.send(200, undefined, '')
    }
    if (!name) return this.error(ex, 400, 'model is required')
    const digest = 'sha256:' + digestOf(name)
    const statuses = op === 'pull'
      ? [{ status: 'pulling manifest' }, { status: `pulling ${digest.slice(7, 19)}`, digest, total: 2019393189 },
        { status: `pulling ${digest.slice(7, 19)}`, digest, total: 2019393189, completed: 2019393189 },
        { status: 'verifying sha256 digest' }, { status: 'writing manifest' }, { status: 'removing any unused layers' }, { status: 'success' }]
      : [{ status: 'gathering model components' }, { status: `using existing layer ${digest}` }, { status: 'writing manifest' }, { status: 'success' }]
    if (!this.installed(name)) this.models.push(normalizeModel(name))
    if (body.stream === false) return ex.send(200, JSON_CT, goJson({ status: 'success' }))
    ex.res.writeHead(200, NDJSON)
    for (const s of statuses) ex.res.write(goJson(s) + '\n')
    ex.res.end()
  }

  // ---------- inference ----------

  private async native(ex: Exchange, kind: 'chat' | 'generate'): Promise<void> {
    const body = this.body(ex, kind === 'chat' ? 'api.ChatRequest' : 'api.GenerateRequest')
    if (!body) return
    const model = typeof body.model === 'string' ? body.model : ''
    if (!model) return this.error(ex, 400, 'model is required')
    if (!this.installed(model)) return this.error(ex, 404, `model '${model}' not found`)
    if (this.embeddingOnly(model)) return this.error(ex, 400, `${goQuote(model)} does not support ${kind}`)
    const messages: any[] = kind === 'chat' && Array.isArray(body.messages) ? body.messages : []
    const images = kind === 'chat' ? messages.some((m) => Array.isArray(m?.images) && m.images.length > 0) : Array.isArray(body.images) && body.images.length > 0
    const empty = kind === 'chat' ? messages.length === 0 : !body.prompt && !images
    const unload = isZeroKeepAlive(body.keep_alive)
    const bare = (done_reason: string): Record<string, unknown> => kind === 'chat'
      ? { model, created_at: goTime(), message: { role: 'assistant', content: '' }, done: true, done_reason }
      : { model, created_at: goTime(), response: '', done: true, done_reason }
    if (empty && unload) { this.unload(model); return ex.send(200, JSON_CT, goJson(bare('unload'))) }
    if (this.refused((s, m) => this.error(ex, s, m))) return
    const cold = this.load(model)
    if (empty) return ex.send(200, JSON_CT, goJson(bare('load')))
    const users = messages.filter((m) => String(m?.role).toLowerCase() === 'user')
    const gen = generate(this.mode, {
      model, images, think: body.think === true || typeof body.think === 'string', maxTokens: body.options?.num_predict,
      texts: kind === 'chat' ? messages.map((m) => contentOf(m?.content).text) : [String(body.prompt ?? ''), String(body.system ?? '')],
      lastUser: kind === 'chat' ? contentOf(users[users.length - 1]?.content).text : String(body.prompt ?? ''), tools: kind === 'chat' ? body.tools : undefined,
    })
    const toolCalls = gen.tool ? [{ id: 'call_1', function: { index: 0, name: gen.tool.name, arguments: gen.tool.args } }] : undefined
    const part = (p: Record<string, unknown>): Record<string, unknown> => kind === 'chat'
      ? { model, created_at: goTime(), message: { role: 'assistant', content: p.content ?? '', thinking: p.thinking, tool_calls: p.tool_calls } }
      : { model, created_at: goTime(), response: p.content ?? '', thinking: p.thinking }
    const context = kind === 'generate' ? { context: Array.from({ length: gen.promptTokens + gen.evalCount }, (_, i) => i + 1) } : {}
    const final = (p: Record<string, unknown>): string => goJson({ ...part(p), done: true, done_reason: gen.finish, ...context, ...this.metrics(gen, cold) })
    const chunk = (p: Record<string, unknown>): Frame => () => goJson({ ...part(p), done: false }) + '\n'
    const content = gen.tool ? [chunk({ tool_calls: toolCalls })] : gen.tokens.map((t) => chunk({ content: t }))
    const finish = (): void => { if (unload) this.unload(model) }
    if (body.stream === false) {
      return runOnce(ex, this.mode, content.length, () => this.error(ex, 500, OLLAMA_STREAM_ERROR), () => {
        ex.send(200, JSON_CT, final({ content: gen.tokens.join(''), thinking: gen.thinking, tool_calls: toolCalls }))
        finish()
      })
    }
    await runStream(ex, this.mode, {
      headers: NDJSON, head: gen.thinking ? [chunk({ thinking: gen.thinking })] : [], content, tail: [() => final({}) + '\n'],
      errorFrame: goJson({ error: OLLAMA_STREAM_ERROR }) + '\n',
      failBeforeWrite: () => ex.send(500, 'application/json', goJson({ error: OLLAMA_STREAM_ERROR })),
    })
    finish()
  }

  private async openaiChat(ex: Exchange): Promise<void> {
    const body = this.body(ex, 'openai.ChatCompletionRequest', (s, m) => this.oaiError(ex, s, m, false))
    if (!body) return
    const messages: any[] = Array.isArray(body.messages) ? body.messages : []
    if (messages.length === 0) return this.oaiError(ex, 400, "[] is too short - 'messages'", false)
    const model = typeof body.model === 'string' ? body.model : ''
    if (!model) return this.oaiError(ex, 400, 'model is required')
    if (!this.installed(model)) return this.oaiError(ex, 404, `model '${model}' not found`)
    if (this.embeddingOnly(model)) return this.oaiError(ex, 400, `${goQuote(model)} does not support chat`)
    if (this.refused((s, m) => this.oaiError(ex, s, m))) return
    this.load(model)
    const users = messages.filter((m) => m?.role === 'user')
    const effort = body.reasoning_effort ?? body.reasoning?.effort
    const gen = generate(this.mode, {
      model, texts: messages.map((m) => contentOf(m?.content).text), tools: body.tools, maxTokens: body.max_tokens,
      images: messages.some((m) => contentOf(m?.content).images || (Array.isArray(m?.images) && m.images.length > 0)),
      lastUser: contentOf(users[users.length - 1]?.content).text, think: typeof effort === 'string' && effort !== 'none',
    })
    const id = `chatcmpl-${this.completionIds++ % 999}`
    const created = Math.floor(Date.now() / 1000)
    const toolCalls = gen.tool ? [{ id: 'call_1', index: 0, type: 'function', function: { name: gen.tool.name, arguments: goJson(gen.tool.args) } }] : undefined
    const finishReason = gen.tool && gen.finish === 'stop' ? 'tool_calls' : gen.finish
    const usage = { prompt_tokens: gen.promptTokens, completion_tokens: gen.evalCount, total_tokens: gen.promptTokens + gen.evalCount }
    const envelope = (rest: Record<string, unknown>, m = model): Record<string, unknown> => ({ id, object: 'chat.completion.chunk', created, model: m, system_fingerprint: 'fp_ollama', ...rest })
    const sse = (v: unknown): string => `data: ${goJson(v)}\n\n`
    let first = true
    const delta = (d: Record<string, unknown>): string => {
      const withRole = first ? { role: 'assistant', ...d } : d
      first = false
      return sse(envelope({ choices: [{ index: 0, delta: withRole, finish_reason: null }] }))
    }
    if (body.stream !== true) {
      return runOnce(ex, this.mode, gen.tool ? 1 : gen.tokens.length, () => this.oaiError(ex, 500, OLLAMA_STREAM_ERROR), () => {
        const message = { role: 'assistant', content: gen.tokens.join(''), reasoning: gen.thinking, tool_calls: toolCalls }
        ex.send(200, WRITER_CT, goJson({ id, object: 'chat.completion', created, model, system_fingerprint: 'fp_ollama', choices: [{ index: 0, message, finish_reason: finishReason }], usage }) + '\n')
      })
    }
    const head = gen.thinking ? [delta({ content: '', reasoning: gen.thinking })] : []
    const content = gen.tool ? [delta({ content: '', tool_calls: toolCalls })] : gen.tokens.map((t) => delta({ content: t }))
    if (head.length + content.length === 0) head.push(delta({ content: '' }))
    const tail = [sse(envelope({ choices: [{ index: 0, delta: {}, finish_reason: finishReason }] }))]
    if (body.stream_options?.include_usage === true) tail.push(sse(envelope({ choices: [], usage })))
    tail.push('data: [DONE]\n\n')
    await runStream(ex, this.mode, {
      headers: { 'Content-Type': 'text/event-stream' }, head, content, tail,
      // an {"error"} line decodes into an empty ChatResponse: an empty chunk, then the stream just ends
      errorFrame: sse(envelope({ choices: [{ index: 0, delta: { content: '' }, finish_reason: null }] }, '')),
      failBeforeWrite: () => this.oaiError(ex, 500, OLLAMA_STREAM_ERROR),
    })
  }

  private openaiModels(ex: Exchange, one?: string): void {
    const entry = (m: string): Record<string, unknown> => {
      const parts = m.split('/')
      return { id: m, object: 'model', created: MODIFIED_UNIX, owned_by: parts.length > 1 ? parts[parts.length - 2] : 'library' }
    }
    if (one === undefined) return ex.send(200, WRITER_CT, goJson({ object: 'list', data: this.models.length ? this.models.map(entry) : null }) + '\n')
    if (!this.installed(one)) return this.oaiError(ex, 404, `model '${one}' not found`)
    ex.send(200, WRITER_CT, goJson(entry(one)) + '\n')
  }

  private async embed(ex: Exchange, kind: 'embed' | 'embeddings' | 'openai'): Promise<void> {
    const oai = kind === 'openai'
    const fail = (s: number, m: string, viaWriter = true): void => (oai ? this.oaiError(ex, s, m, viaWriter) : this.error(ex, s, m))
    const body = this.body(ex, oai ? 'openai.EmbedRequest' : kind === 'embed' ? 'api.EmbedRequest' : 'api.EmbeddingRequest', (s, m) => fail(s, m, false))
    if (!body) return
    const format = body.encoding_format
    if (oai && typeof format === 'string' && format !== '' && !/^(float|base64)$/i.test(format)) {
      return fail(400, `Invalid value for 'encoding_format' = ${format}. Supported values: ['float', 'base64'].`, false)
    }
    let input: unknown = kind === 'embeddings' ? body.prompt ?? '' : body.input === '' && oai ? [''] : body.input
    if (oai && (input == null || (Array.isArray(input) && input.length === 0))) return fail(400, 'invalid input', false)
    const model = typeof body.model === 'string' ? body.model : ''
    if (!model) return fail(400, 'model is required')
    if (!this.installed(model)) return fail(404, `model '${model}' not found`)
    if (this.refused(fail)) return
    const cold = this.load(model)
    const inputs = (Array.isArray(input) ? input : input == null || input === '' ? [] : [input]).map(String)
    const vectors = inputs.map(embeddingOf)
    const count = inputs.reduce((n, s) => n + wordCount(s), 0)
    const encode = (v: number[]): unknown => (/^base64$/i.test(String(format)) ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v)
    await runOnce(ex, this.mode, 0, () => fail(500, OLLAMA_STREAM_ERROR), () => {
      if (kind === 'embeddings') return ex.send(200, JSON_CT, goJson({ embedding: vectors[0] ?? [] }))
      if (kind === 'embed') {
        const load = cold ? 1_500_000_000 : 1_000_000
        const metrics = vectors.length ? { total_duration: load + 5_000_000, load_duration: load, prompt_eval_count: count || undefined } : {}
        return ex.send(200, JSON_CT, goJson({ model, embeddings: vectors, ...metrics }))
      }
      const data = vectors.map((v, index) => ({ object: 'embedding', embedding: encode(v), index }))
      ex.send(200, WRITER_CT, goJson({ object: 'list', data, model, usage: { prompt_tokens: count, total_tokens: count } }) + '\n')
    })
  }
}
