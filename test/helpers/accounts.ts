import { Writable } from 'node:stream'
import type { Gateway } from './gateway.js'

// HTTP calls for the users, sessions and keys tests.

export interface Answer { status: number, json: any }

/** One JSON request; `headers` usually from `gw.auth()` or `bearer()`. */
export async function call (gw: Gateway, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

export const bearer = (token: string): { authorization: string } => ({ authorization: `Bearer ${token}` })

export const login = (gw: Gateway, username: string, password: string): Promise<Answer> =>
  call(gw, 'POST', '/auth/login', {}, { username, password })

export const refresh = (gw: Gateway, refreshToken: string): Promise<Answer> =>
  call(gw, 'POST', '/auth/refresh', {}, { refresh_token: refreshToken })

/** The claims of a JWT, unverified. */
export const claims = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())

/** The status of an authenticated GET /v1/models: the cheapest "is this credential accepted". */
export const models = async (gw: Gateway, headers: Record<string, string>): Promise<Answer> => call(gw, 'GET', '/v1/models', headers)

/** A log destination that keeps every line, to look for secrets in. */
export function captureLog (): { stream: Writable, text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { chunks.push(String(chunk)); done() } })
  return { stream, text: () => chunks.join('') }
}
