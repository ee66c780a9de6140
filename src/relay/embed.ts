import type { Backend } from '../backends/backend.js'
import type { Cancellation, Pool } from '../backends/pool.js'
import { GatewayError, type Surface } from '../errors.js'
import type { EmbedRequest, EmbedResult } from '../protocols/internal.js'
import { onSomeBackend } from './retry.js'
import { UpstreamRefusal, backendJson, connectionFailure, refusal } from './upstream.js'
import type { ChatRecord } from './usage.js'

/** `embed` is Ollama's /api/embed, `embeddings` its legacy /api/embeddings, `openai` /v1/embeddings. */
export type EmbedKind = 'embed' | 'embeddings' | 'openai'

export interface EmbedJob {
  kind: EmbedKind
  request: EmbedRequest
  body: Record<string, unknown>
  model: string
}

const PATHS: Record<EmbedKind, string> = { embed: '/api/embed', embeddings: '/api/embeddings', openai: '/v1/embeddings' }
const surfaceOf = (kind: EmbedKind): Surface => kind === 'openai' ? 'openai' : 'ollama'

function float32Base64 (vector: number[]): string {
  return Buffer.from(new Float32Array(vector).buffer).toString('base64')
}

/** The client's answer built from embeddings computed by a backend of the other protocol. */
function answer (job: EmbedJob, result: EmbedResult): object {
  if (job.kind === 'embeddings') return { embedding: result.embeddings[0] ?? [] }
  if (job.kind === 'embed') return { model: job.request.model, embeddings: result.embeddings, prompt_eval_count: result.promptTokens }
  const base64 = job.body.encoding_format === 'base64'
  return {
    object: 'list',
    data: result.embeddings.map((embedding, index) => ({ object: 'embedding', embedding: base64 ? float32Base64(embedding) : embedding, index })),
    model: job.request.model,
    usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens },
  }
}

function readResult (backend: Backend, value: unknown): EmbedResult {
  const body = value as { embeddings?: number[][], prompt_eval_count?: number, data?: Array<{ embedding?: number[] }>, usage?: { prompt_tokens?: number } }
  if (backend.protocol === 'ollama') return { embeddings: body.embeddings ?? [], promptTokens: body.prompt_eval_count ?? 0 }
  return { embeddings: (body.data ?? []).map((d) => d.embedding ?? []), promptTokens: body.usage?.prompt_tokens ?? 0 }
}

function upstreamCall (job: EmbedJob, backend: Backend, upstreamModel: string): { path: string, body: object } {
  if (surfaceOf(job.kind) === backend.protocol) return { path: PATHS[job.kind], body: { ...job.body, model: upstreamModel } }
  const dims = job.request.dimensions !== undefined ? { dimensions: job.request.dimensions } : {}
  return backend.protocol === 'ollama'
    ? { path: '/api/embed', body: { model: upstreamModel, input: job.request.input, ...dims } }
    : { path: '/v1/embeddings', body: { model: upstreamModel, input: job.request.input, encoding_format: 'float', ...dims } }
}

/** Embeddings on any backend serving the model; returns the body for the client. */
export async function relayEmbed (pool: Pool, retries: number, job: EmbedJob, signal: Cancellation, record: ChatRecord): Promise<unknown> {
  return onSomeBackend({
    pool, model: job.model, signal, retries, mayRetry: () => true,
    onAttempt: (backend, n) => { record.backend = backend.name; record.attempts = n },
  }, async (lease) => {
    const backend = lease.backend
    const { path, body } = upstreamCall(job, backend, lease.entry.upstream)
    const sent = backendJson(body)
    let text: string
    try {
      const res = await backend.post(path, sent, signal)
      if (res.statusCode >= 400) throw await refusal(backend, res)
      text = await res.body.text()
    } catch (err) {
      if (err instanceof UpstreamRefusal) throw err
      if (signal.aborted) throw new GatewayError(499, 'request canceled', 'client_closed')
      throw connectionFailure(backend, err)
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new GatewayError(502, `backend ${backend.name} sent a malformed answer`, 'upstream_error')
    }
    const result = readResult(backend, parsed)
    record.usage = { promptTokens: result.promptTokens, completionTokens: 0 }
    return surfaceOf(job.kind) === backend.protocol ? parsed : answer(job, result)
  })
}
