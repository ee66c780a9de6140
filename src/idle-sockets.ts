import type { Server } from 'node:http'
import type { Socket } from 'node:net'

/**
 * Closing the server waits for every open connection, and Node's own idle sweep skips sockets
 * that never sent a request (clients open spare keep-alive connections), so a shutdown could hang
 * for minutes. This closes every connection that has no request in flight; open streams go on.
 */
export function closeIdleSocketsOnClose (server: Server): () => void {
  const busy = new Map<Socket, number>()
  server.on('connection', (socket: Socket) => {
    busy.set(socket, 0)
    socket.once('close', () => busy.delete(socket))
  })
  server.on('request', (req, res) => {
    const socket = req.socket
    busy.set(socket, (busy.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1
      busy.set(socket, left)
      if (left === 0 && !server.listening) socket.end()
    })
  })
  return () => {
    for (const [socket, requests] of busy) if (requests === 0) socket.destroy()
  }
}
