import type { FastifyReply } from 'fastify'
import type { Backend } from '../backends/backend.js'
import type { Lease, Pool } from '../backends/pool.js'
import { onSomeBackend } from './retry.js'
import { GatewayError, type Surface } from '../errors.js'
import type { ChatRequest } from '../protocols/internal.js'
import { encodeOllamaChat } from '../protocols/ollama/request.js'
import type { OllamaKind } from '../protocols/ollama/response.js'
import { encodeOpenAIChat } from '../protocols/openai/request.js'
import { ClientStream } from './client-stream.js'
import { deliver, errorFrame } from './deliver.js'
import { backendJson, connectionFailure, refusal } from './upstream.js'
import type { ChatRecord } from './usage.js'

export interface ChatJob {
  surface: Surface
  kind: OllamaKind
  /** Decoded request; `model` is the name the client used. */
  request: ChatRequest
  /** The client's own body, sent on as it is (model renamed) when the backend speaks the same protocol. */
  body: Record<string, unknown>
  /** The client's JSON text of `body`. */
  text?: string | undefined
  /** The model after alias resolution. */
  model: string
}

export interface RelayOptions {
  pool: Pool
  retries: number
  keepAliveMs: number
  /** How long a client may leave written answer bytes unread before it is cut off (0: for ever). */
  sendTimeoutMs: number
}

function upstreamCall (job: ChatJob, backend: Backend, upstreamModel: string): { path: string, body: string } {
  const same = job.surface === backend.protocol
  // Nothing to change: the client's own text goes on (no re-encoding of long conversations).
  const asSent = (): string => job.text !== undefined && upstreamModel === job.body.model ? job.text : backendJson({ ...job.body, model: upstreamModel })
  if (backend.protocol === 'ollama') {
    const path = job.kind === 'generate' && same ? '/api/generate' : '/api/chat'
    return { path, body: same ? asSent() : backendJson(encodeOllamaChat(job.request, upstreamModel)) }
  }
  const path = '/v1/chat/completions'
  if (!same) return { path, body: backendJson(encodeOpenAIChat(job.request, upstreamModel, backend.config.type === 'xinference' ? 'xinference' : 'openai')) }
  if (!job.request.stream) return { path, body: asSent() }
  // Ask for usage even when the client did not; the extra chunk is filtered out again.
  const streamOptions = { ...(job.body.stream_options as object | undefined), include_usage: true }
  return { path, body: backendJson({ ...job.body, model: upstreamModel, stream_options: streamOptions }) }
}

/** Sends the chat to one leased backend and streams its answer to the client. */
async function attempt (job: ChatJob, lease: Lease, client: ClientStream, reply: FastifyReply, record: ChatRecord, startedAt: number): Promise<void> {
  const backend = lease.backend
  const { path, body } = upstreamCall(job, backend, lease.entry.upstream)
  let res
  try {
    res = await backend.post(path, body, client.signal)
  } catch (err) {
    if (client.gone) return
    throw connectionFailure(backend, err)
  }
  if (res.statusCode >= 400) throw await refusal(backend, res)
  client.upstream = res
  client.queuedMs = lease.waitedMs ?? 0
  backend.loaded.add(lease.entry.upstream)
  await deliver({ surface: job.surface, kind: job.kind, request: job.request, backend, res, client, reply, record, startedAt })
}

/**
 * The chat path from a free slot to the last byte: tries up to `retries` other backends while
 * nothing has reached the client, then streams. Errors before the first byte propagate (the
 * route answers with a status); later ones end the stream with the protocol's error form.
 */
export async function relayChat (opts: RelayOptions, job: ChatJob, reply: FastifyReply, record: ChatRecord): Promise<void> {
  const startedAt = Date.now()
  const client = new ClientStream(reply, job.surface === 'openai' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson', opts.sendTimeoutMs)
  if (job.request.stream && job.surface === 'openai') client.startHeartbeat(opts.keepAliveMs, ': keep-alive\n\n')
  try {
    await onSomeBackend({
      pool: opts.pool,
      model: job.model,
      signal: client.signal,
      retries: opts.retries,
      mayRetry: () => !client.contentSent,
      onAttempt: (backend, n) => { record.backend = backend.name; record.attempts = n },
    }, (lease) => attempt(job, lease, client, reply, record, startedAt))
  } catch (err) {
    if (client.gone) return
    const error = err instanceof GatewayError ? err : new GatewayError(502, `gateway error: ${(err as Error).message}`, 'upstream_error')
    if (!client.started) throw error
    record.streamFailed = true
    client.end(errorFrame(job.surface, error))
  } finally {
    client.stopHeartbeat()
  }
}
