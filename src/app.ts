import type { IncomingMessage } from 'node:http'
import Fastify, { LogController, type FastifyBodyParser, type FastifyInstance } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import { ModelAccess } from './auth/access.js'
import { ApiKeys } from './auth/api-keys.js'
import { Sessions } from './auth/sessions.js'
import { Users } from './auth/users.js'
import { takePathKey } from './auth/credentials.js'
import { ExternalSignIn } from './auth/external/sign-in.js'
import jwtAuth from './auth/jwt.js'
import { Pool } from './backends/pool.js'
import { openDatabase } from './store/database.js'
import { StoreGeneration } from './store/generation.js'
import { UsageLog, recordUsage } from './usage/usage-log.js'
import { LocalQuotaStore } from './usage/quota-local.js'
import { RedisQuotaStore } from './usage/quota-redis.js'
import { Quotas } from './usage/quotas.js'
import { registerRateLimits } from './usage/rate-limits.js'
import { connectRedis } from './usage/redis.js'
import type { Config } from './config/schema.js'
import type { Gateway } from './context.js'
import { registerCors } from './cors.js'
import { installErrorHandlers } from './http-errors.js'
import { closeIdleSocketsOnClose } from './idle-sockets.js'
import { logDestination, loggerOptions, requestIds, requestLogLine } from './logging.js'
import { Certificates } from './tls/certificates.js'
import { httpsOptions, setupTls } from './tls/setup.js'
import adminTlsRoutes from './routes/admin-tls.js'
import authRoutes from './routes/auth.js'
import keyRoutes from './routes/keys.js'
import limitRoutes from './routes/limits.js'
import usageRoutes from './routes/usage.js'
import userRoutes from './routes/users.js'
import healthRoutes from './routes/health.js'
import ollamaModelRoutes from './routes/ollama-models.js'
import ollamaRoutes from './routes/ollama.js'
import openaiRoutes from './routes/openai.js'
import proxyRoutes from './proxy/routes.js'
import biochatterRoutes from './routes/biochatter.js'
import signInRoutes from './routes/sign-in.js'
import xinferenceModelRoutes from './routes/xinference-models.js'
import metricsRoutes from './routes/metrics.js'
import docsRoutes from './routes/docs.js'
import adminDashboardRoutes from './routes/admin-dashboard.js'
import type { ReloadHistory, ReloadResult, ReloadTrigger } from './config/reload-result.js'
import { ConfigReloader } from './config/reload.js'
import reloadRoutes from './routes/reload.js'
import { GatewayMetrics } from './metrics/metrics.js'
import { serverTiming } from './metrics/timing.js'
import fastifyCookie from '@fastify/cookie'

declare module 'fastify' {
  interface FastifyInstance {
    /** Cuts off every connection, streams in flight too (the end of a shutdown's grace period). */
    closeAllConnections: () => void
    /** Config reloads so far (SIGHUP, file changes, POST /admin/reload). */
    reloads: ReloadHistory
    /** Reads the config file again and swaps it in when valid (config/reload.ts). */
    reloadConfig: (trigger: ReloadTrigger) => Promise<ReloadResult>
  }
  interface FastifyRequest { bodyText: string | undefined }
}

type ContentTypeParser = FastifyBodyParser<string>

export interface AppOptions {
  /** Skip periodic discovery (tests drive `gateway.pool.refresh()` themselves). */
  discovery?: boolean
  /** Where log lines go (default stdout). */
  logStream?: DestinationStream
  /** The file the config came from: reloads read it again. */
  configFile?: string
}

/**
 * The time a client has to send a whole request (HTTP/1.1, plain or over TLS). Fastify sets none
 * on HTTP (0) and leaves Node's 300 s on HTTPS. Node keeps to it only while the time for the
 * headers alone is no longer, and looks for late requests every connectionsCheckingInterval (read
 * when the server starts listening): a quarter of the limit, between 50 ms and Node's 30 s.
 */
function limitRequestTime (server: FastifyInstance['server'], timeoutMs: number): void {
  const limits = server as unknown as { requestTimeout: number, headersTimeout: number, connectionsCheckingInterval: number }
  limits.requestTimeout = timeoutMs
  if (timeoutMs === 0) return
  limits.headersTimeout = Math.min(60_000, timeoutMs)
  limits.connectionsCheckingInterval = Math.min(30_000, Math.max(50, Math.floor(timeoutMs / 4)))
}

/**
 * Fastify's trustProxy for server.trustProxy. true is one proxy, not Fastify's "trust every hop",
 * which takes the first X-Forwarded-For entry, written by the client itself, for its address
 * (and so passes anyone for a trusted network). A number is a chain of that many proxies.
 */
function proxyTrust (setting: Config['server']['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (setting === false || Array.isArray(setting)) return setting
  const hops = setting === true ? 1 : setting
  return (_address, hop) => hop < hops
}

/** Builds the whole gateway from a validated config. Tests build exactly this. */
export async function buildApp (config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const ownLog = options.logStream === undefined ? logDestination() : undefined
  const logStream = options.logStream ?? ownLog!.stream
  // With TLS on, the certificates are known before the server exists: it asks them per connection.
  const certificates = config.tls.mode === 'off' ? undefined : new Certificates(config, pino({ enabled: false }))
  const app = Fastify({
    ...(certificates !== undefined && httpsOptions(certificates)),
    logger: { ...loggerOptions(config), stream: logStream },
    // One line per request comes from logging.ts instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIds(),
    bodyLimit: config.server.bodyLimit,
    trustProxy: proxyTrust(config.server.trustProxy),
    // Keep the body as the client sent it (pass-through) and reject wrong types instead of coercing.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    return503OnClosing: true,
    // /k/<key>/… routed without its key prefix (credentials.ts); only when asked for: it runs per request.
    ...(config.auth.pathKeys && { rewriteUrl: (req: IncomingMessage) => takePathKey(req) }),
  })

  limitRequestTime(app.server, config.server.requestTimeoutMs)
  const pool = new Pool(config)
  const db = openDatabase(config.store.dir)
  const usage = new UsageLog(db, config.store.usageFlushMs, { log: app.log })
  const redis = config.store.redis === undefined ? undefined : await connectRedis(config.store.redis, app.log)
  const quotaStore = redis === undefined
    ? new LocalQuotaStore(db, () => usage.flush())
    : new RedisQuotaStore(redis.client, redis.config.keyPrefix, config.limits.holdTimeoutMs)
  const users = new Users(db, config.auth.users)
  const gateway: Gateway = {
    config,
    pool,
    access: new ModelAccess(config.auth.modelAccess),
    relay: { pool, retries: config.routing.retries, keepAliveMs: config.routing.keepAliveMs, sendTimeoutMs: config.server.sendTimeoutMs },
    db,
    keys: new ApiKeys(db),
    users,
    sessions: new Sessions(db),
    signIn: new ExternalSignIn(db, users, config.auth.signIn),
    usage,
    quotas: new Quotas(config.limits, quotaStore, (err) => redis?.failed(err)),
  }
  app.decorate('gateway', gateway)
  const reloader = new ConfigReloader(options.configFile, gateway, app.log)
  app.decorate('reloads', reloader)
  app.decorate('reloadConfig', (trigger: ReloadTrigger) => reloader.reload(trigger))
  const sockets = closeIdleSocketsOnClose(app.server)
  app.decorate('closeAllConnections', sockets.closeAll)
  app.addHook('preClose', async () => { sockets.closeIdle() })
  app.addHook('onClose', async () => {
    await reloader.close()
    await pool.close()
    await gateway.quotas.close()
    await redis?.close()
    // Records of requests that just finished are written before the store closes.
    usage.close()
    db.close()
    ownLog?.close()
  })

  // Ollama's own examples use `curl -d '{…}'` (form content type) and Go ignores the type:
  // every body on the API is JSON, whatever the client called it. The text is kept, so a chat
  // that needs no change goes upstream as the client wrote it.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.decorateRequest('bodyText', undefined)
  const keepText: ContentTypeParser = (request, text, done) => {
    request.bodyText = text as string
    parseJson(request, text, done)
  }
  app.removeContentTypeParser(['text/plain', 'application/json'])
  app.addContentTypeParser(['application/json', '*'], { parseAs: 'string' }, keepText)

  const metrics = config.metrics.enabled
    ? new GatewayMetrics({ pool, certificates, biochatterPrefix: config.biochatter.enabled ? config.biochatter.prefix : undefined, reloads: () => app.reloads })
    : undefined
  pool.observer = metrics
  const usageDone = recordUsage(gateway.usage)
  requestLogLine(app, metrics === undefined ? usageDone : (request, status, durationMs) => {
    usageDone(request, status, durationMs)
    metrics.observe(request, status, durationMs)
  })
  // The overhead header of answers sent through Fastify (the chat path and proxied apps set their own).
  app.addHook('onSend', (request, reply, payload, done) => {
    if (!reply.hasHeader('server-timing')) void reply.header('server-timing', serverTiming(request.receivedAt))
    done(null, payload)
  })
  installErrorHandlers(app)
  // Before authentication: its hook answers preflights, which carry no credentials.
  await registerCors(app, config.server.cors.origins)
  await app.register(jwtAuth, { config, keys: gateway.keys, users: gateway.users, sessions: gateway.sessions, generation: new StoreGeneration(db) })
  await registerRateLimits(app, redis)

  // Before every route: it describes the routes registered after it.
  await app.register(docsRoutes)
  await app.register(healthRoutes)
  if (metrics !== undefined) await app.register(metricsRoutes, { metrics })
  else app.decorate('metricsUrl', undefined)
  await app.register(authRoutes)
  await app.register(openaiRoutes)
  await app.register(ollamaRoutes)
  await app.register(ollamaModelRoutes)
  await app.register(xinferenceModelRoutes)
  await app.register(adminTlsRoutes)
  await app.register(reloadRoutes)
  await app.register(keyRoutes)
  await app.register(limitRoutes)
  await app.register(userRoutes)
  await app.register(usageRoutes)
  await app.register(biochatterRoutes)
  // Cookies are read only where a route needs them (the login gate), not on every request.
  await app.register(fastifyCookie, { hook: false })
  await app.register(signInRoutes)
  await app.register(adminDashboardRoutes)
  await app.register(proxyRoutes)

  if (certificates === undefined) app.decorate('tls', undefined)
  else {
    try {
      await setupTls(app, config, certificates)
    } catch (err) {
      // Nothing to serve with: release the listener and timers already set up.
      await app.close()
      throw err
    }
  }
  if (config.server.watchConfig) reloader.watch(config.server.reloadDebounceMs)
  if (options.discovery !== false) pool.start()
  return app
}
