// Xinference emulator: FastAPI/sse-starlette wire format (CRLF SSE frames, {"detail"} errors,
// Python json.dumps spacing in stream chunks, compact orjson/JSONResponse bodies).
import { randomUUID } from 'node:crypto'
import {
  EmulatorServer, type Exchange, type Frame, PyFloat, contentOf, embeddingOf, generate, pyJson, runOnce, runStream, wordCount,
} from './common.js'

export interface XinferenceModel {
  uid: string
  name: string
  abilities?: string[] // default ['generate','chat']
  type?: 'LLM' | 'embedding'
}

export interface XinferenceEmulatorOptions {
  models?: XinferenceModel[] // default [{uid:'qwen2.5-instruct',name:'qwen2.5-instruct'}]
  apiKey?: string
  usageOnFinishChunk?: boolean // default true (vLLM engine behaviour)
}

export const XINFERENCE_STREAM_ERROR = 'CUDA error: out of memory'

const JSON_CT = 'application/json'
const SSE_HEADERS = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' }
const INFERENCE = new Set(['/v1/chat/completions', '/v1/embeddings'])
const compact = (v: unknown): string => pyJson(v, { spaced: false })
const sse = (v: unknown): string => `data: ${pyJson(v, { spaced: true })}\r\n\r\n`
const notFound = (uid: string): string => `Model not found in the model list, uid: ${uid}`

export class XinferenceEmulator extends EmulatorServer {
  models: XinferenceModel[]
  readonly apiKey: string | undefined
  usageOnFinishChunk: boolean
  private engines = new Map<string, string>()

  private constructor(opts: XinferenceEmulatorOptions) {
    super()
    this.models = (opts.models ?? [{ uid: 'qwen2.5-instruct', name: 'qwen2.5-instruct' }]).map((m) => ({ ...m }))
    this.apiKey = opts.apiKey
    this.usageOnFinishChunk = opts.usageOnFinishChunk ?? true
  }

  static async start(opts: XinferenceEmulatorOptions = {}): Promise<XinferenceEmulator> {
    const emulator = new XinferenceEmulator(opts)
    await emulator.listen()
    return emulator
  }

  protected isInference(path: string): boolean { return INFERENCE.has(path) }

  protected async handle(ex: Exchange): Promise<void> {
    const m = /^\/v1\/models\/([^/]+)(\/progress)?$/.exec(ex.path)
    const uid = m ? decodeURIComponent(m[1]!) : ''
    const routes: Record<string, Record<string, () => void | Promise<void>>> = {
      '/v1/cluster/auth': { GET: () => ex.send(200, JSON_CT, compact({ auth: this.apiKey !== undefined })) },
      '/v1/models': { GET: () => this.list(ex), POST: () => this.launch(ex) },
      '/v1/chat/completions': { POST: () => this.chat(ex) },
      '/v1/embeddings': { POST: () => this.embed(ex) },
    }
    const route = routes[ex.path] ?? (m?.[2] ? { GET: () => this.progress(ex, uid) } : m ? { GET: () => this.describeRoute(ex, uid), DELETE: () => this.terminate(ex, uid) } : undefined)
    if (!route) return this.detail(ex, 404, 'Not Found')
    const fn = route[ex.method]
    if (!fn) return this.detail(ex, 405, 'Method Not Allowed')
    if (this.apiKey !== undefined && ex.path !== '/v1/cluster/auth' && ex.req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return this.detail(ex, 401, 'Could not validate credentials', { 'WWW-Authenticate': 'Bearer' })
    }
    await fn()
  }

  // ---------- helpers ----------

  private detail(ex: Exchange, status: number, detail: string, headers: Record<string, string> = {}): void {
    ex.send(status, JSON_CT, compact({ detail }), headers)
  }
  private find(uid: unknown): XinferenceModel | undefined { return this.models.find((m) => m.uid === uid) }
  /** request.json(): a bad body is an unhandled JSONDecodeError → the plain-text 500 handler. */
  private body(ex: Exchange): Record<string, any> | undefined {
    const b = ex.rec.body
    if (typeof b === 'object' && b !== null && !Array.isArray(b)) return b
    if (b === undefined || typeof b === 'string') {
      const at = ex.raw.length - ex.raw.trimStart().length
      ex.send(500, 'text/plain; charset=utf-8', `Internal Server Error: Expecting value: line 1 column ${at + 1} (char ${at})`)
    } else {
      ex.send(500, 'text/plain; charset=utf-8', `Internal Server Error: 1 validation error for request body`)
    }
    return undefined
  }
  /** Busy (loading, 503 + Retry-After) or forced error before generation; true when answered. */
  private refused(ex: Exchange, uid: string): boolean {
    if (this.mode.busy) this.detail(ex, 503, `Model is loading, please retry later: Model ${uid} is loading, please retry later`, { 'Retry-After': '30' })
    else if (this.mode.httpError) this.detail(ex, this.mode.httpError.status, this.mode.httpError.message)
    else return false
    return true
  }
  private rateLimitMessage(uid: string): string { return `Rate limit reached for the model. Request limit 1 for the model: ${uid}` }
  private description(m: XinferenceModel): Record<string, unknown> {
    const common = { address: '127.0.0.1:30001', accelerators: ['0'] }
    if (m.type === 'embedding') {
      return { model_type: 'embedding', model_name: m.name, dimensions: 4, max_tokens: 512, language: ['en'], model_format: 'pytorch', quantization: 'none', ...common, model_engine: this.engines.get(m.uid) ?? 'sentence_transformers', replica: 1 }
    }
    return {
      model_type: 'LLM', model_name: m.name, model_family: m.name, model_ability: m.abilities ?? ['generate', 'chat'], model_format: 'pytorch',
      model_size_in_billions: '0_5', quantization: 'none', context_length: 32768, ...common, model_engine: this.engines.get(m.uid) ?? 'vLLM', replica: 1,
    }
  }

  // ---------- model management ----------

  private list(ex: Exchange): void {
    const data = this.models.map((m) => ({ id: m.uid, object: 'model', created: 0, owned_by: 'xinference', ...this.description(m) }))
    ex.send(200, JSON_CT, compact({ object: 'list', data }))
  }

  private describeRoute(ex: Exchange, uid: string): void {
    const m = this.find(uid)
    if (!m) return this.detail(ex, 400, notFound(uid)) // ValueError → 400 on this route
    ex.send(200, JSON_CT, compact(this.description(m)))
  }

  private terminate(ex: Exchange, uid: string): void {
    if (!this.find(uid)) return this.detail(ex, 400, notFound(uid))
    this.models = this.models.filter((m) => m.uid !== uid)
    ex.send(200, JSON_CT, 'null')
  }

  private progress(ex: Exchange, uid: string): void {
    const body = this.find(uid) ? { progress: new PyFloat(1) } : { progress: new PyFloat(0), stage: 'pending', download_files: [], replicas: [] }
    ex.send(200, JSON_CT, compact(body))
  }

  private launch(ex: Exchange): void {
    const body = this.body(ex)
    if (!body) return
    const type = body.model_type ?? 'LLM'
    if (!body.model_name) return this.detail(ex, 400, 'Invalid input. Please specify the `model_name` field.')
    if (!body.model_engine && type === 'LLM') return this.detail(ex, 400, 'Invalid input. Please specify the `model_engine` field.')
    const uid = String(body.model_uid || body.model_name)
    if (this.find(uid)) return this.detail(ex, 400, `Model is already in the model list, uid: ${uid}`)
    this.models.push({ uid, name: String(body.model_name), type: type === 'embedding' ? 'embedding' : 'LLM' })
    if (body.model_engine) this.engines.set(uid, String(body.model_engine))
    ex.send(200, JSON_CT, compact({ model_uid: uid }))
  }

  // ---------- inference ----------

  private async chat(ex: Exchange): Promise<void> {
    const body = this.body(ex)
    if (!body) return
    const messages: any[] = Array.isArray(body.messages) ? body.messages : []
    if (messages.length === 0) return this.detail(ex, 400, 'Invalid input. Please specify the prompt.')
    const uid = String(body.model ?? '')
    if (!this.find(uid)) return this.detail(ex, 404, notFound(uid))
    if (this.refused(ex, uid)) return
    const stream = body.stream === true
    if (this.mode.rateLimited) {
      if (!stream) return this.detail(ex, 429, this.rateLimitMessage(uid))
      // streamed: the limit is hit inside the SSE generator, after the 200 headers went out
      ex.res.writeHead(200, SSE_HEADERS)
      return void ex.res.end(`data: ${pyJson({ error: `429: ${this.rateLimitMessage(uid)}` }, { spaced: true, ascii: true })}\r\n\r\n`)
    }
    let kwargs = body.chat_template_kwargs
    if (typeof kwargs === 'string') try { kwargs = JSON.parse(kwargs) } catch { kwargs = {} }
    const think = [body.enable_thinking, body.extra_body?.enable_thinking, kwargs?.enable_thinking].includes(true) ||
      (typeof body.reasoning_effort === 'string' && body.reasoning_effort !== 'none')
    const users = messages.filter((m) => m?.role === 'user')
    const gen = generate(this.mode, {
      model: uid, texts: messages.map((m) => contentOf(m?.content).text), images: messages.some((m) => contentOf(m?.content).images),
      lastUser: contentOf(users[users.length - 1]?.content).text, tools: body.tools, think, maxTokens: body.max_completion_tokens ?? body.max_tokens,
    })
    const hasTools = Array.isArray(body.tools) && body.tools.length > 0
    const id = `chatcmpl-${randomUUID()}`
    const created = Math.floor(Date.now() / 1000)
    const callId = `call_${randomUUID()}`
    const args = gen.tool ? pyJson(gen.tool.args, { spaced: true }) : ''
    const usage = { prompt_tokens: gen.promptTokens, completion_tokens: gen.evalCount, total_tokens: gen.promptTokens + gen.evalCount }
    const finishReason = gen.tool ? 'tool_calls' : gen.finish

    if (!stream) {
      const content = gen.tokens.join('')
      const reasoning = gen.thinking !== undefined ? { reasoning_content: gen.thinking } : {}
      const result = hasTools
        ? {
            id, model: uid, object: 'chat.completion', created,
            choices: [{ index: 0, message: { role: 'assistant', content, tool_calls: gen.tool ? [{ id: callId, type: 'function', function: { name: gen.tool.name, arguments: args } }] : [], ...reasoning }, logprobs: null, finish_reason: finishReason }],
            usage,
          }
        : { id, object: 'chat.completion', created, model: uid, choices: [{ index: 0, message: { role: 'assistant', content, ...reasoning }, logprobs: null, finish_reason: finishReason }], usage }
      return runOnce(ex, this.mode, gen.tool ? 2 : gen.tokens.length, () => this.detail(ex, 500, XINFERENCE_STREAM_ERROR), () => ex.send(200, JSON_CT, compact(result)))
    }

    const chunk = (choice: Record<string, unknown>, u: unknown = null): string =>
      sse({ id, model: uid, created, object: 'chat.completion.chunk', choices: [{ index: 0, ...choice }], usage: u })
    const toolChunk = (delta: Record<string, unknown>, finish: string | null): string =>
      sse({ id, model: uid, object: 'chat.completion.chunk', created, choices: [{ index: 0, delta: { role: 'assistant', content: '', ...delta }, logprobs: null, finish_reason: finish }], usage: null })
    const head: Frame[] = [sse({
      id, model: uid, created, object: 'chat.completion.chunk',
      choices: [{ index: 0, delta: think ? { role: 'assistant', content: null, reasoning_content: '' } : { role: 'assistant', content: '' }, finish_reason: null }],
    })]
    if (gen.thinking !== undefined) head.push(chunk({ delta: { reasoning_content: gen.thinking, content: null }, logprobs: null, finish_reason: null }))
    const content: Frame[] = gen.tool
      ? [
          toolChunk({ tool_calls: [{ index: 0, id: callId, type: 'function', function: { arguments: '', name: gen.tool.name } }] }, null),
          toolChunk({ tool_calls: [{ index: 0, id: callId, type: 'function', function: { arguments: args } }] }, null),
        ]
      : gen.tokens.map((t) => chunk({ delta: think ? { reasoning_content: null, content: t } : { content: t }, logprobs: null, finish_reason: null }))
    const tail: Frame[] = [gen.tool
      ? toolChunk({ tool_calls: [] }, 'tool_calls') // the tool path reports no usage on its finish chunk
      : chunk({ delta: think ? { content: '', reasoning_content: null } : { content: '' }, logprobs: null, finish_reason: gen.finish }, this.usageOnFinishChunk ? usage : null)]
    if (body.stream_options?.include_usage === true) tail.push(sse({ id, model: uid, created, object: 'chat.completion.chunk', choices: [], usage }))
    tail.push('data: [DONE]\r\n\r\n')
    const errorFrame = `data: ${pyJson({ error: XINFERENCE_STREAM_ERROR }, { spaced: true, ascii: true })}\r\n\r\n`
    await runStream(ex, this.mode, { headers: SSE_HEADERS, flushHeadersFirst: true, head, content, tail, errorFrame, failBeforeWrite: () => ex.res.end(errorFrame) })
  }

  private async embed(ex: Exchange): Promise<void> {
    const body = this.body(ex)
    if (!body) return
    const uid = String(body.model ?? '')
    if (!this.find(uid)) return this.detail(ex, 404, notFound(uid))
    if (this.refused(ex, uid)) return
    if (this.mode.rateLimited) return this.detail(ex, 429, this.rateLimitMessage(uid))
    const inputs = (Array.isArray(body.input) ? body.input : [body.input ?? '']).map(String)
    const count = inputs.reduce((n, s) => n + wordCount(s), 0)
    const data = inputs.map((s, index) => ({ index, object: 'embedding', embedding: embeddingOf(s).map((x) => new PyFloat(x)) }))
    const result = { object: 'list', model: uid, model_replica: `${uid}-rep0`, data, usage: { prompt_tokens: count, total_tokens: count } }
    await runOnce(ex, this.mode, 0, () => this.detail(ex, 500, XINFERENCE_STREAM_ERROR), () => ex.send(200, JSON_CT, compact(result)))
  }
}
