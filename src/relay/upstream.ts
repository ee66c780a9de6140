import type { IncomingHttpHeaders } from 'node:http'
import { GatewayError } from '../errors.js'
import type { Backend } from '../backends/backend.js'
import { upstreamErrorText } from '../protocols/openai/response.js'

const MAX_MESSAGE = 500

/**
 * A body for a backend as JSON. JSON.stringify recurses, so a request nested deeper than a few
 * thousand levels (which parsing allowed) cannot be re-encoded: that is the caller's error, a
 * 400 before anything is sent, never a failure of the backend (which would be marked down).
 */
export function backendJson (value: unknown): string {
  try {
    return JSON.stringify(value)
  } catch (err) {
    if (err instanceof RangeError) throw new GatewayError(400, 'the request\'s JSON is nested too deeply to be sent on to a backend', 'invalid_request')
    throw err
  }
}

/** The human message inside a backend's error body: Ollama `error`, OpenAI `error.message`, FastAPI `detail`. */
export function upstreamMessage (text: string): string {
  let message = text.trim()
  try {
    const body = JSON.parse(text) as { error?: unknown, detail?: unknown }
    if (body.error !== undefined && body.error !== null) message = upstreamErrorText(body.error)
    else if (typeof body.detail === 'string') message = body.detail
    else if (body.detail !== undefined) message = JSON.stringify(body.detail)
  } catch {}
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message || 'no error message'
}

function retryAfterSeconds (headers: IncomingHttpHeaders): number | undefined {
  const value = Number(headers['retry-after'])
  return Number.isFinite(value) && value >= 0 ? Math.ceil(value) : undefined
}

/** Upstream said no before any byte reached the client. `retryable` means another backend may try. */
export class UpstreamRefusal extends Error {
  constructor (readonly error: GatewayError, readonly retryable: boolean) {
    super(error.message)
  }
}

/** Turns a backend's error response into what the client should see; drains the body. */
/** What `refusal` reads of a response: undici's own or the chat path's. */
interface ErrorResponse { statusCode: number, headers: IncomingHttpHeaders, body: { text: () => Promise<string> } }

export async function refusal (backend: Backend, res: ErrorResponse): Promise<UpstreamRefusal> {
  const message = upstreamMessage(await res.body.text())
  const status = res.statusCode
  if (status === 503 || status === 429) {
    return new UpstreamRefusal(new GatewayError(status, message, status === 429 ? 'rate_limit_exceeded' : 'server_busy', retryAfterSeconds(res.headers) ?? 1), true)
  }
  // A stale model list: the backend no longer has it, another may.
  if (status === 404) return new UpstreamRefusal(new GatewayError(404, message, 'model_not_found'), true)
  if (status >= 500) {
    backend.markDown(`answered ${status}`)
    return new UpstreamRefusal(new GatewayError(502, `backend ${backend.name} failed: ${message}`, 'upstream_error'), false)
  }
  return new UpstreamRefusal(new GatewayError(status === 401 || status === 403 ? 502 : status, status === 401 || status === 403 ? `backend ${backend.name} refused the gateway's credentials: ${message}` : message), false)
}

/** Connection-level failures: the backend is marked down and another may try. */
export function connectionFailure (backend: Backend, err: unknown): UpstreamRefusal {
  const code = (err as { code?: string }).code ?? ''
  const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT'
  backend.markDown(`${code || 'error'}: ${(err as Error).message}`)
  const error = timeout
    ? new GatewayError(504, `backend ${backend.name} did not answer in time`, 'upstream_timeout')
    : new GatewayError(502, `backend ${backend.name} is unreachable`, 'upstream_unreachable')
  return new UpstreamRefusal(error, true)
}
