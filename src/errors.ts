// One error type for the whole gateway, rendered in whichever protocol the caller speaks.

export type Surface = 'openai' | 'ollama' | 'biochatter'

export class GatewayError extends Error {
  /** A spent token quota: the quota's size (the BioChatter Next API reports it). */
  quotaLimit?: number
  /** The limit of ChatGate's that refused (429): the metrics count refusals by it, a backend's own 429 has none. */
  limit?: 'rate' | 'quota' | 'concurrency'

  constructor (
    readonly statusCode: number,
    message: string,
    readonly code: string = defaultCode(statusCode),
    readonly retryAfterSeconds?: number,
  ) {
    super(message)
  }
}

function defaultCode (status: number): string {
  switch (status) {
    case 400: return 'invalid_request'
    case 401: return 'invalid_api_key'
    case 403: return 'permission_denied'
    case 404: return 'not_found'
    case 413: return 'request_too_large'
    case 429: return 'rate_limit_exceeded'
    case 503: return 'server_busy'
    case 504: return 'upstream_timeout'
    default: return status >= 500 ? 'upstream_error' : 'invalid_request'
  }
}

/** The OpenAI `error.type` for a status, as OpenAI and Ollama's /v1 use them. */
function openaiType (status: number): string {
  if (status === 400 || status === 413 || status === 422) return 'invalid_request_error'
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  return 'api_error'
}

export function openaiErrorBody (status: number, message: string, code: string = defaultCode(status)): object {
  return { error: { message, type: openaiType(status), param: null, code } }
}

function ollamaErrorBody (message: string): object {
  return { error: message }
}

export function errorBody (surface: Surface, err: GatewayError): object {
  return surface === 'ollama' ? ollamaErrorBody(err.message) : openaiErrorBody(err.statusCode, err.message, err.code)
}

/** Which protocol a path belongs to; the Ollama surface is `/api/*` and `/`. */
export function surfaceOf (url: string): Surface {
  return url.startsWith('/api/') || url === '/' || url.startsWith('/?') ? 'ollama' : 'openai'
}
