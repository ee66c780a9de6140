// The dashboard's calls to ChatGate's admin API. The browser session (an httpOnly cookie) buys a
// short-lived token from /admin/session-token; every API call carries that token as Bearer, so
// the API itself never accepts the cookie. The token lives in memory only and is bought again
// before it expires, or when a call comes back 401.

const TOKEN_PATH = '/admin/session-token'
/** Buy a new token when the one in hand has less than this left. */
const RENEW_BEFORE_MS = 60_000

/** The API said no: its status and its own words. */
export class ApiError extends Error {
  constructor (status, message, code) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** The browser session is gone (signed out elsewhere, expired, account disabled). */
export class SignedOut extends Error {}

let current = null
let buying = null

async function body (res) {
  const text = await res.text()
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function problem (res, data) {
  const error = data !== null && typeof data === 'object' ? data.error : undefined
  const message = typeof error === 'string' ? error : error?.message ?? (typeof data === 'string' && data.trim() !== '' ? data.trim() : res.statusText)
  return new ApiError(res.status, `${res.status}: ${message}`, error?.code)
}

async function buyToken () {
  const res = await fetch(TOKEN_PATH, { method: 'POST', headers: { 'x-chatgate-dashboard': '1' }, credentials: 'same-origin', cache: 'no-store' })
  const data = await body(res)
  if (res.status === 401) throw new SignedOut('Your browser session has ended: sign in again.')
  if (!res.ok) throw problem(res, data)
  current = { token: data.token, expiresAt: Date.parse(data.expires_at), user: data.user }
  return current
}

/** The current token (and who it is for), bought when there is none or it is about to expire. */
export function session (renew = false) {
  if (!renew && current !== null && current.expiresAt - Date.now() > RENEW_BEFORE_MS) return Promise.resolve(current)
  // Calls made at once share one purchase.
  buying ??= buyToken().finally(() => { buying = null })
  return buying
}

function send (method, path, token, payload, accept) {
  const headers = { authorization: `Bearer ${token}`, accept }
  if (payload !== undefined) headers['content-type'] = 'application/json'
  return fetch(path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload), credentials: 'omit', cache: 'no-store' })
}

/**
 * One API call; the answer's JSON (or text, for `accept: 'text/csv'`). Throws ApiError with the
 * API's own message, or SignedOut.
 */
export async function api (method, path, payload, accept = 'application/json') {
  let res = await send(method, path, (await session()).token, payload, accept)
  if (res.status === 401) {
    // The token may have died with a change in the store: buy one more, once.
    await res.arrayBuffer()
    res = await send(method, path, (await session(true)).token, payload, accept)
  }
  const data = await body(res)
  if (!res.ok) throw problem(res, data)
  return data
}

/** A query string of the given parameters that have a value. */
export function query (params) {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, value)
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}
