import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

// A real redis-server (Debian's redis-server package) per test file, on a unix socket in a
// fresh directory: no port to collide on, and it can be stopped and started again on the
// same address to test an outage.

export interface TestRedis {
  url: string
  /** A plain client for looking at what the gateway stored. */
  client: () => Redis
  stop: () => Promise<void>
  start: () => Promise<void>
}

interface Teardown { teardown: (fn: () => unknown) => void }

export async function startRedis (t: Teardown): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-redis-'))
  const socket = join(dir, 'redis.sock')
  let child: ChildProcess | undefined
  const clients: Redis[] = []

  const start = async (): Promise<void> => {
    // Its output goes to pipes of this process, never to inherited descriptors: a redis-server
    // that outlives a killed test file must not hold the test runner's output open.
    child = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    // redis-server prints this line once it accepts connections.
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const read = (d: Buffer): void => {
        out += d.toString()
        if (/ready to accept connections/i.test(out)) resolve()
      }
      child!.stdout!.on('data', read)
      child!.stderr!.on('data', read)
      child!.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)))
    })
  }
  const stop = async (): Promise<void> => {
    const running = child
    if (running === undefined || running.exitCode !== null) return
    child = undefined
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve())
      running.kill('SIGKILL')
    })
  }
  await start()
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    url: `unix://${socket}`,
    client: () => {
      const c = new Redis({ path: socket })
      clients.push(c)
      return c
    },
    stop,
    start,
  }
}
