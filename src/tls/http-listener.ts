import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { challengePath } from './acme.js'
import type { TlsStorage } from './storage.js'

// The plain-HTTP port next to HTTPS: it answers ACME HTTP-01 challenges (from the shared storage,
// whichever replica placed them) and sends everything else to HTTPS with a 308, which keeps the
// method and body, the host, path and query.

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/'

/** `httpsPort` is asked per request: the HTTPS listener may not have its port yet. */
export async function startHttpListener (host: string, port: number, httpsPort: () => number, storage: TlsStorage, log: FastifyBaseLogger): Promise<Server> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/'
    if (url.startsWith(CHALLENGE_PREFIX)) {
      const answer = storage.read(challengePath(url.slice(CHALLENGE_PREFIX.length)))
      res.writeHead(answer === undefined ? 404 : 200, { 'content-type': 'text/plain' })
      res.end(answer ?? 'no such challenge')
      return
    }
    const hostname = /^(\[[^\]]+\]|[^:]+)/.exec(req.headers.host ?? '')?.[1]
    if (hostname === undefined) {
      res.writeHead(400, { 'content-type': 'text/plain' })
      res.end('a Host header is required')
      return
    }
    const to = httpsPort()
    res.writeHead(308, { location: `https://${hostname}${to === 443 ? '' : `:${to}`}${url}`, 'content-length': 0 })
    res.end()
  })
  server.listen(port, host)
  await once(server, 'listening')
  log.info({ address: server.address() }, 'HTTP listener: ACME challenges and redirects to HTTPS')
  return server
}
