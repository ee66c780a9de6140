import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'

// Web apps for the reverse-proxy tests: plain node:http servers (and a ws server beside them) that
// record what reached them.

export interface Seen { method: string, url: string, headers: IncomingHttpHeaders, body: Buffer, sha256: string }

export interface Upstream {
  url: string
  port: number
  server: Server
  /** Requests that reached the app, bodies read in full (unless the handler answered first). */
  seen: Seen[]
  /** WebSocket upgrade requests that reached the app. */
  upgrades: IncomingMessage[]
}

export type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** Answers with what it received: method, url, headers, body size and hash. */
export const echo: Handler = (_req, res, seen) => {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ method: seen.method, url: seen.url, headers: seen.headers, bytes: seen.body.length, sha256: seen.sha256 }))
}

interface Teardown { teardown: (fn: () => unknown) => void }

/**
 * An app on a free loopback port. `handler` runs once the body is read, or at once with
 * `early: true` (for handlers that answer, or never answer, before the body ends).
 */
export async function startUpstream (t: Teardown, handler: Handler = echo, options: { early?: boolean, webSocket?: boolean } = {}): Promise<Upstream> {
  const seen: Seen[] = []
  const upgrades: IncomingMessage[] = []
  const server = createServer((req, res) => {
    const entry: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.alloc(0), sha256: '' }
    seen.push(entry)
    if (options.early === true) {
      handler(req, res, entry)
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      entry.body = Buffer.concat(chunks)
      entry.sha256 = sha256(entry.body)
      handler(req, res, entry)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  if (options.webSocket === true) {
    // Echoes every message, and first sends the path it was reached on.
    const wss = new WebSocketServer({ server })
    wss.on('connection', (socket, req) => {
      upgrades.push(req)
      socket.send(`path ${req.url!}`)
      socket.on('message', (data, binary) => socket.send(data, { binary }))
    })
    // Before the server closes (teardowns run last first): it waits for upgraded sockets too.
    t.teardown(() => { for (const client of wss.clients) client.terminate() })
  }
  const port = (server.address() as AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, port, server, seen, upgrades }
}

/** A loopback port nobody listens on (any more). */
export async function deadPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}
