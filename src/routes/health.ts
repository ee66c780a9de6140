import type { FastifyInstance } from 'fastify'

// Probes for container platforms: unauthenticated and cheap (they read state, never ask a backend).

export default async function healthRoutes (app: FastifyInstance): Promise<void> {
  /** Liveness: the process answers. */
  app.get('/healthz', { config: { public: true, rateLimit: false } }, async () => ({ status: 'ok' }))

  /**
   * Readiness: the config is loaded (it is, or nothing would answer), a certificate is in service
   * when TLS is on, and at least one backend answered its last discovery.
   */
  app.get('/readyz', { config: { public: true, rateLimit: false } }, async (_request, reply) => {
    const problems: string[] = []
    const now = Date.now()
    const backends = app.gateway.pool.backends
    const healthy = backends.filter((b) => b.discovered && b.isUp(now)).length
    if (healthy === 0) problems.push(`no healthy backend (of ${backends.length})`)
    const certificates = app.tls?.certificates.status()
    if (certificates !== undefined && !certificates.some((c) => c.notAfter !== undefined)) problems.push('no certificate in service yet')
    const body = { status: problems.length === 0 ? 'ready' : 'not ready', backends: { healthy, total: backends.length }, ...(problems.length > 0 && { problems }) }
    return reply.code(problems.length === 0 ? 200 : 503).send(body)
  })
}
