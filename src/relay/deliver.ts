import type { FastifyReply } from 'fastify'
import type { Backend } from '../backends/backend.js'
import type { UpstreamResponse } from '../backends/exchange.js'
import { GatewayError, type Surface } from '../errors.js'
import { LineSplitter, SseSplitter, countLines, lastLine, parseJson, sseData } from '../protocols/framing.js'
import type { ChatRequest, StreamStep } from '../protocols/internal.js'
import { OllamaStreamReader, OllamaStreamWriter, ollamaResult, ollamaStreamError, plainContentLiteral, readOllamaResult, tapOllamaUsage, type OllamaKind } from '../protocols/ollama/response.js'
import { nextCompletion } from '../protocols/biochatter/response.js'
import { OpenAIStreamReader, OpenAIStreamWriter, openaiCompletion, openaiStreamError, readOpenAICompletion } from '../protocols/openai/response.js'
import type { ClientStream } from './client-stream.js'
import { UpstreamRefusal, connectionFailure } from './upstream.js'
import { usageOrEstimate, type ChatRecord } from './usage.js'

// Moving an upstream answer to the client: byte pass-through when the protocols match (tapped
// for usage), translation when they differ. Every stream ends with done/[DONE] or an error.

export interface Delivery {
  surface: Surface
  kind: OllamaKind
  request: ChatRequest
  backend: Backend
  res: UpstreamResponse
  client: ClientStream
  reply: FastifyReply
  record: ChatRecord
  startedAt: number
}

const TRUNCATED = 'backend closed the stream before the answer was complete'

export function errorFrame (surface: Surface, err: GatewayError): string {
  return surface === 'ollama' ? ollamaStreamError(err.message) : openaiStreamError(err.statusCode, err.message, err.code)
}

/** Reading the upstream body failed: end the client's stream with an error frame, or let another backend try. */
async function upstreamFailed (d: Delivery, err: unknown): Promise<never> {
  if (d.client.gone) throw new StreamClosed()
  const failure = connectionFailure(d.backend, err)
  // Nothing reached the client yet: another backend may still answer.
  if (!d.client.contentSent) throw failure
  d.record.streamFailed = true
  await d.client.write(errorFrame(d.surface, new GatewayError(502, `backend ${d.backend.name} failed mid-stream: ${failure.error.message}`, 'upstream_error')))
  throw new StreamClosed()
}

async function * frames (d: Delivery, splitter: LineSplitter | SseSplitter): AsyncGenerator<Buffer[]> {
  try {
    for await (const chunk of d.res.body) yield splitter.push(chunk)
  } catch (err) {
    await upstreamFailed(d, err)
  }
}

/** The stream already ended with an error frame. */
class StreamClosed extends Error {}

/**
 * An error as the stream's first word (Xinference reports rate limits that way) is answered like
 * an error status: with a real HTTP error, or by another backend when it is a rate limit. Callers
 * pass only errors with no content before them in their batch; content already written stays.
 */
function refuseBeforeContent (d: Delivery, message: string): void {
  if (d.client.contentSent) return
  const limited = /^429\b/.test(message)
  const error = limited ? new GatewayError(429, message, 'rate_limit_exceeded', 1) : new GatewayError(502, `backend ${d.backend.name} failed: ${message}`, 'upstream_error')
  throw new UpstreamRefusal(error, limited)
}

function markFirstToken (d: Delivery): void {
  d.record.ttftMs ??= Date.now() - d.startedAt
}

async function writeFrames (d: Delivery, out: Buffer[] | string): Promise<void> {
  if (out.length === 0) return
  markFirstToken(d)
  await d.client.write(typeof out === 'string' ? out : out.length === 1 ? out[0]! : Buffer.concat(out))
}

/** Ends the stream; the last frames go out in the same write as the end of the response. */
function finish (d: Delivery, last: Buffer[] | string, trailer = ''): void {
  if (last.length > 0) markFirstToken(d)
  const body = typeof last === 'string' ? last + trailer : Buffer.concat(trailer === '' ? last : [...last, Buffer.from(trailer)])
  d.client.end(body.length > 0 ? body : undefined)
}

async function passNdjson (d: Delivery): Promise<void> {
  let done = false
  let failed = false
  let pieces = 0
  let usage
  const reader = new OllamaStreamReader()
  const splitter = new LineSplitter()
  const pending: Buffer[] = []
  // The body is read here directly, not through frames(): this is the hot path.
  try {
    for await (const chunk of d.res.body) {
      // Whole lines go on as they came, in one write; the tail waits for its newline.
      const lines = splitter.whole(chunk)
      if (lines === undefined) continue
      pieces += countLines(lines)
      // The done line and an error line both end the stream, so only the last line can be one.
      const last = lastLine(lines)
      const mentionsError = last.includes('"error"')
      if (mentionsError || last.includes('"done":true')) {
        const text = last.toString('utf8')
        // The usual done line: its counts are read off it, as from a whole answer.
        const tapped = mentionsError ? undefined : tapOllamaUsage(text)
        const step = tapped === undefined ? reader.read(text) : { done: true }
        usage = tapped ?? reader.usage
        if (step.error !== undefined && last.length === lines.length) refuseBeforeContent(d, step.error)
        done ||= step.done === true
        failed ||= step.error !== undefined
        // The done line and an error line carry no answer.
        if (step.done === true || step.error !== undefined) pieces -= 1
      }
      d.record.pieces = pieces
      if (done || failed) pending.push(lines)
      else await writeFrames(d, [lines])
    }
  } catch (err) {
    if (err instanceof UpstreamRefusal) throw err
    await upstreamFailed(d, err)
  }
  if (done) usageOrEstimate(usage, d.request, pieces, d.record)
  if (!done) d.record.streamFailed = true
  finish(d, pending, done || failed ? '' : ollamaStreamError(TRUNCATED))
}

// Python servers (Xinference) write `"key": value`, Go and Node servers `"key":value`.
const mentionsUsage = (event: Buffer): boolean => event.includes('"usage":{') || event.includes('"usage": {')

async function passSse (d: Delivery): Promise<void> {
  let done = false
  let finished = false
  let failed = false
  let pieces = 0
  const reader = new OpenAIStreamReader()
  const pending: Buffer[] = []
  for await (const events of frames(d, new SseSplitter())) {
    const out: Buffer[] = []
    for (const event of events) {
      if (failed) break
      if (event.length < 24 && sseData(event) === '[DONE]') done = true
      else if (event.includes('"error"') || mentionsUsage(event)) {
        const data = sseData(event) ?? ''
        const step = reader.read(data)
        if (step.error !== undefined) {
          if (out.length === 0) refuseBeforeContent(d, step.error)
          // Xinference sends {"error":"<string>"}; OpenAI clients expect the error object.
          out.push(Buffer.from(openaiStreamError(502, step.error, 'upstream_error')))
          failed = true
          continue
        }
        // The usage-only chunk the gateway asked for, which this client did not.
        if (!d.request.includeUsage && (parseJson(data) as { choices?: unknown[] } | undefined)?.choices?.length === 0) continue
      } else pieces += 1
      if (event.includes('"finish_reason":"') || event.includes('"finish_reason": "')) finished = true
      out.push(event)
    }
    d.record.pieces = pieces
    if (failed || done) pending.push(...out)
    else await writeFrames(d, out)
  }
  usageOrEstimate(reader.usage, d.request, pieces, d.record)
  if (failed || (!done && !finished)) d.record.streamFailed = true
  finish(d, pending, failed || done ? '' : finished ? 'data: [DONE]\n\n' : openaiStreamError(502, TRUNCATED, 'upstream_error'))
}

async function translateStream (d: Delivery): Promise<void> {
  const fromOllama = d.backend.protocol === 'ollama'
  const reader = fromOllama ? new OllamaStreamReader() : new OpenAIStreamReader()
  const model = d.request.model
  const writer = d.surface === 'openai' ? new OpenAIStreamWriter(model, d.request.includeUsage) : new OllamaStreamWriter(model, d.kind, d.startedAt)
  // Ollama's answer-text lines go into OpenAI chunks as they are, unparsed.
  const literals = fromOllama && writer instanceof OpenAIStreamWriter ? writer : undefined
  let finished = false
  let pieces = 0
  let pending = ''
  for await (const batch of frames(d, fromOllama ? new LineSplitter() : new SseSplitter())) {
    let out = ''
    for (const frame of batch) {
      if (finished) break
      const text = fromOllama ? frame.toString('utf8') : sseData(frame)
      if (text === undefined || text.trim() === '') continue
      const literal = literals === undefined ? undefined : plainContentLiteral(text)
      if (literals !== undefined && literal !== undefined) {
        const chunk = literals.contentLiteral(literal)
        if (chunk !== '') pieces += 1
        out += chunk
        continue
      }
      const step: StreamStep = reader.read(text)
      if (step.delta !== undefined) {
        pieces += 1
        out += writer.delta(step.delta)
      }
      if (step.error !== undefined) {
        if (out === '') refuseBeforeContent(d, step.error)
        d.record.streamFailed = true
        finish(d, out, errorFrame(d.surface, new GatewayError(502, step.error, 'upstream_error')))
        return
      }
      finished ||= step.done === true
    }
    d.record.pieces = pieces
    if (finished) pending += out
    else await writeFrames(d, out)
  }
  const reason = reader.finishReason
  if (!finished && (fromOllama || reason === undefined)) {
    d.record.streamFailed = true
    finish(d, pending, errorFrame(d.surface, new GatewayError(502, TRUNCATED, 'upstream_error')))
    return
  }
  const usage = usageOrEstimate(reader.usage, d.request, pieces, d.record)
  markFirstToken(d)
  finish(d, pending, writer.finish(reason ?? 'stop', usage))
}

async function deliverWhole (d: Delivery, passthrough: boolean): Promise<void> {
  let text: string
  try {
    text = await d.res.body.text()
  } catch (err) {
    if (d.client.gone) return
    throw connectionFailure(d.backend, err)
  }
  // The hot case, Ollama to an Ollama client: the counts are read off the answer's tail.
  const tapped = passthrough && d.backend.protocol === 'ollama' ? tapOllamaUsage(text) : undefined
  if (tapped !== undefined) {
    usageOrEstimate(tapped, d.request, 0, d.record)
    markFirstToken(d)
    d.client.sendWhole(text)
    return
  }
  const parsed = parseJson(text)
  if (parsed === undefined) throw new GatewayError(502, `backend ${d.backend.name} sent a malformed answer`, 'upstream_error')
  const result = d.backend.protocol === 'ollama' ? readOllamaResult(parsed) : readOpenAICompletion(parsed)
  const usage = usageOrEstimate(result.usage, d.request, Math.ceil(result.content.length / 4), d.record)
  markFirstToken(d)
  if (passthrough) d.client.sendWhole(text)
  else if (d.surface === 'openai') d.client.sendWhole(JSON.stringify(openaiCompletion(d.request.model, result)))
  else if (d.surface === 'biochatter') d.client.sendWhole(JSON.stringify(nextCompletion(result, usage)))
  else d.client.sendWhole(JSON.stringify(ollamaResult(d.request.model, d.kind, result, usage, { startedAt: d.startedAt })))
}

export async function deliver (d: Delivery): Promise<void> {
  const passthrough = d.surface === d.backend.protocol
  try {
    if (!d.request.stream) await deliverWhole(d, passthrough)
    else if (!passthrough) await translateStream(d)
    else if (d.surface === 'ollama') await passNdjson(d)
    else await passSse(d)
  } catch (err) {
    if (err instanceof StreamClosed) d.client.end()
    else throw err
  }
}
