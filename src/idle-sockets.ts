import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { ServerHttp2Session } from 'node:http2'
import { Server as TlsServer, type TLSSocket } from 'node:tls'

/**
 * Closing the server waits for every open connection, and Node's own idle sweep skips sockets
 * that never sent a request (clients open spare keep-alive connections), so a shutdown could hang
 * for minutes. This closes every connection that has no request in flight; open streams go on.
 */
export function closeIdleSocketsOnClose (server: Server): { closeIdle: () => void, closeAll: () => void } {
  const busy = new Map<Socket, number>()
  // Over TLS a request's socket is the TLS socket, not the TCP one under it. HTTP/2 connections
  // are closed as sessions instead: GOAWAY, and open streams finish (Fastify does this only when
  // it may force connections closed).
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
  const tls = server instanceof TlsServer
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    if (tls && (socket as TLSSocket).alpnProtocol === 'h2') return
    busy.set(socket, 0)
    socket.once('close', () => busy.delete(socket))
  })
  server.on('request', (req, res) => {
    if (req.httpVersionMajor === 2) return
    const socket = req.socket
    busy.set(socket, (busy.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1
      busy.set(socket, left)
      if (left === 0 && !server.listening) socket.end()
    })
  })
  return {
    closeIdle: () => {
      for (const [socket, requests] of busy) if (requests === 0) socket.destroy()
      for (const session of sessions) session.close()
    },
    // The shutdown's grace period is over: whatever still runs is cut off.
    closeAll: () => {
      for (const socket of busy.keys()) socket.destroy()
      for (const session of sessions) session.destroy()
    },
  }
}
