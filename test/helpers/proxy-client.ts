import { once } from 'node:events'
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import { WebSocket } from 'ws'
import type { Gateway } from './gateway.js'

// Clients for the reverse-proxy tests: raw HTTP that can set any header (Host included) and send a
// body in chunks, WebSockets through the gateway, the gateway's log lines as they are written.

export interface Answer { status: number, headers: IncomingHttpHeaders, body: Buffer, text: string, json: () => any }

/** One request on a connection of its own, with exactly the headers given (Host too). */
export async function send (base: string, path: string, options: { method?: string, headers?: Record<string, string | string[]>, body?: Buffer | string } = {}): Promise<Answer> {
  const res = await open(base, path, options)
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  const body = Buffer.concat(chunks)
  const text = body.toString()
  return { status: res.statusCode!, headers: res.headers, body, text, json: () => JSON.parse(text) }
}

/** The response as it begins, its body unread. */
export async function open (base: string, path: string, options: { method?: string, headers?: Record<string, string | string[]>, body?: Buffer | string } = {}): Promise<IncomingMessage> {
  const url = new URL(path, base)
  const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false })
  req.end(options.body)
  const [res] = await once(req, 'response') as [IncomingMessage]
  return res
}

/** A POST whose body goes out in chunks (Transfer-Encoding: chunked, no Content-Length). */
export async function sendChunked (base: string, path: string, chunks: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number, text: string }> {
  const req = httpRequest(new URL(path, base), { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...headers }, agent: false })
  req.on('error', () => {}) // the gateway may close while the last chunks are still going out
  for (const chunk of chunks) req.write(chunk)
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return { status: res.statusCode!, text }
}

/** A WebSocket through the gateway: open, or the status of the refused upgrade. */
export async function wsConnect (t: Test, gw: Gateway, path: string, headers: Record<string, string> = {}): Promise<{ socket: WebSocket, next: () => Promise<Buffer> } | number> {
  const socket = new WebSocket(`${gw.url.replace(/^http/, 'ws')}${path}`, { headers })
  t.teardown(() => socket.terminate())
  // Messages kept from the start: the app greets as soon as it is connected.
  const queue: Buffer[] = []
  const waiting: Array<(m: Buffer) => void> = []
  socket.on('message', (data) => {
    const message = data as Buffer
    const waiter = waiting.shift()
    if (waiter === undefined) queue.push(message)
    else waiter(message)
  })
  const next = (): Promise<Buffer> => queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiting.push(resolve))
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve({ socket, next }))
    socket.once('unexpected-response', (_req, res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    socket.once('error', reject)
  })
}

/** Fails with `what` unless `promise` settles within `ms`: a failure detector for a hang, never a wait. */
export async function within<T> (promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(what)), ms) })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Log lines as they are written; `until` waits for one that matches. */
export function logCapture (): { stream: Writable, lines: Array<Record<string, unknown>>, until: (match: (line: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const waiters: Array<() => void> = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      for (const text of String(chunk).split('\n').filter((l) => l !== '')) lines.push(JSON.parse(text))
      for (const waiter of waiters.splice(0)) waiter()
      done()
    },
  })
  const until = async (match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = lines.find(match)
      if (found !== undefined) return found
      await new Promise<void>((resolve) => waiters.push(resolve))
    }
  }
  return { stream, lines, until }
}
