import { Type, type Static } from '@sinclair/typebox'
import { BioChatterSchema } from './biochatter-schema.js'
import { ProxySchema } from './proxy-schema.js'
import { SignInSchema } from './sign-in-schema.js'

// The config file's schema. Defaults live here so that the example file, the generated JSON Schema
// and the running gateway agree on them.

const HttpUrl = Type.String({ pattern: '^https?://[^\\s/]+', description: 'http(s) URL' })
const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')])
const Ms = (def: number, description: string) => Type.Integer({ minimum: 0, default: def, description })

export const ServerSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', description: 'Address to listen on' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'HTTP port (0 picks a free one)' }),
  bodyLimit: Type.Integer({ minimum: 1024, default: 20 * 1024 * 1024, description: 'Largest request body in bytes (images make chat bodies large)' }),
  trustProxy: Type.Union([
    Type.Boolean(),
    Type.Integer({ minimum: 1 }),
    Type.Array(Type.String({ description: 'an IP address or CIDR of a proxy in front (checked like auth.trustedNetworks.cidrs)' }), { minItems: 1 }),
  ], {
    default: false,
    expected: 'true, false, a number of proxies (1 or more) or a list of their addresses',
    description: 'Proxies in front whose X-Forwarded-* headers count: true for one load balancer (the client is the address it appended), a number for a chain of that many, or the proxies\' addresses and CIDRs; false: none',
  }),
  cors: Type.Object({
    origins: Type.Array(Type.String({ pattern: '^(\\*|[a-z][a-z0-9+.-]*://[^\\s/]+)$', description: 'a web origin, scheme://host[:port] without a path (* for any part of a host name or an extension id), or * for any' }), {
      default: [],
      description: 'Web origins whose pages may call the API from a browser (CORS): https://chat.lab.org, https://*.lab.org, chrome-extension://*, or * for any; none by default',
    }),
  }, { additionalProperties: false, default: {} }),
  requestTimeoutMs: Ms(300_000, 'Longest a client may take to send a whole request, headers and body: a slower one gets 408 and its connection is closed, so that trickled requests cannot hold connections open (0: no limit). Answers are not limited: a stream may run for hours'),
  sendTimeoutMs: Ms(60_000, 'Longest a client may go without reading while an answer waits for it (as Nginx\'s send_timeout): then the connection is closed and the backend request aborted, so a stalled client cannot hold a backend slot (0: no limit)'),
  shutdownGraceMs: Type.Integer({ minimum: 0, default: 30_000, description: 'On SIGTERM, how long open streams may run before they are cut off (their usage is still recorded); a second SIGTERM exits at once' }),
  watchConfig: Type.Boolean({ default: true, description: 'Reload the config when its file changes (as on SIGHUP or POST /admin/reload)' }),
  reloadDebounceMs: Type.Integer({ minimum: 0, default: 500, description: 'After a change of the config file, wait this long for more changes before reloading (editors write in several steps)' }),
}, { additionalProperties: false, default: {} })

export const UserSchema = Type.Object({
  username: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9._@-]+$' }),
  passwordHash: Type.String({ pattern: '^scrypt\\$', description: 'from `chatgate hash-password`' }),
  role: Type.Optional(Role),
}, { additionalProperties: false })

export const JwtSchema = Type.Object({
  algorithm: Type.Union([Type.Literal('HS256'), Type.Literal('RS256'), Type.Literal('ES256'), Type.Literal('EdDSA')], { default: 'HS256' }),
  secret: Type.Optional(Type.String({ minLength: 32, description: 'HS256 secret; when absent one is generated under store.dir' })),
  publicKeyFile: Type.Optional(Type.String({ description: 'PEM public key (RS256/ES256/EdDSA), verifies tokens' })),
  privateKeyFile: Type.Optional(Type.String({ description: 'PEM private key; needed to issue tokens (login, `chatgate token`)' })),
  issuer: Type.Optional(Type.String({ description: 'Required `iss`; also set on issued tokens' })),
  audience: Type.Optional(Type.String({ description: 'Required `aud`; also set on issued tokens' })),
  tokenTtl: Type.String({ pattern: '^[0-9]+[smhd]$', default: '1h', description: 'a duration like 1h (s, m, h, d): the lifetime of tokens from /auth/login' }),
}, { additionalProperties: false, default: {} })

export const AuthSchema = Type.Object({
  jwt: JwtSchema,
  users: Type.Array(UserSchema, { default: [] }),
  loginPerMinute: Type.Integer({ minimum: 1, default: 10, description: 'Login attempts per client IP per minute (an IPv6 client counts by its /64)' }),
  refreshTokenTtl: Type.String({ pattern: '^[0-9]+[smhd]$', default: '30d', description: 'a duration like 30d (s, m, h, d): the lifetime of refresh tokens from /auth/login, started again by each /auth/refresh' }),
  browserSessionTtl: Type.String({ pattern: '^[0-9]+[smhd]$', default: '12h', description: 'a duration like 12h (s, m, h, d): how long a browser stays signed in on the login page (the session cookie of auth: login proxy routes)' }),
  signIn: SignInSchema,
  pathKeys: Type.Boolean({ default: false, description: 'Accept an API key in the path, /k/<key>/api/chat, for clients that drop URL credentials (the Ollama CLI); the key is never logged' }),
  trustedNetworks: Type.Object({
    cidrs: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'addresses like 10.0.0.0/8 or fd00::/8 whose callers need no credentials' }),
    user: Type.String({ pattern: '^[A-Za-z0-9._@-]+$', default: 'trusted-network', description: 'the service user such callers act as (limits and usage are counted for it)' }),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin')], { default: 'user' }),
  }, { additionalProperties: false, default: {}, description: 'Callers from these networks without credentials act as one service user; off while cidrs is empty' }),
  modelAccess: Type.Object({
    user: Type.Array(Type.String({ minLength: 1 }), { default: ['*'] }),
    admin: Type.Array(Type.String({ minLength: 1 }), { default: ['*'] }),
  }, { additionalProperties: false, default: {}, description: 'Glob patterns of the models each role may use' }),
}, { additionalProperties: false, default: {} })

const PerRole = (user: number, admin: number, description: string) => Type.Object({
  user: Type.Integer({ minimum: 0, default: user }),
  admin: Type.Integer({ minimum: 0, default: admin }),
}, { additionalProperties: false, default: {}, description: `${description}; 0: no limit` })

const UserLimits = Type.Object({
  requestsPerMinute: Type.Optional(Type.Integer({ minimum: 0 })),
  concurrentStreams: Type.Optional(Type.Integer({ minimum: 0 })),
  tokensPerDay: Type.Optional(Type.Integer({ minimum: 0 })),
  tokensPerMonth: Type.Optional(Type.Integer({ minimum: 0 })),
}, { additionalProperties: false })

export const LimitsSchema = Type.Object({
  requestsPerMinute: PerRole(120, 1200, 'Requests per minute of each user, by role'),
  concurrentStreams: PerRole(0, 0, 'Chat requests (streamed or not) each user may have running at once, by role'),
  tokensPerDay: PerRole(0, 0, 'Tokens (prompt + completion) each user may use per UTC day, by role'),
  tokensPerMonth: PerRole(0, 0, 'Tokens each user may use per UTC calendar month, by role'),
  roleTokensPerDay: PerRole(0, 0, 'Tokens all users of a role together may use per UTC day'),
  roleTokensPerMonth: PerRole(0, 0, 'Tokens all users of a role together may use per UTC month'),
  users: Type.Record(Type.String({ pattern: '^[A-Za-z0-9._@-]+$' }), UserLimits, { default: {}, additionalProperties: false, description: "Per-user overrides of the role's limits, by user name" }),
  completionEstimate: Type.Integer({ minimum: 1, default: 1024, description: 'Tokens reserved for the answer when a request sets no max_tokens / num_predict' }),
  holdTimeoutMs: Type.Integer({ minimum: 1000, default: 3_600_000, description: 'With Redis: how long the holds of a replica that died keep counting (longer chats stop counting as running after this)' }),
}, { additionalProperties: false, default: {} })

export const BackendSchema = Type.Object({
  name: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9._-]+$' }),
  type: Type.Union([Type.Literal('ollama'), Type.Literal('xinference'), Type.Literal('openai')]),
  url: HttpUrl,
  apiKey: Type.Optional(Type.String({ minLength: 1, description: 'Sent upstream as Bearer (xinference, openai)' })),
  maxConcurrent: Type.Integer({ minimum: 1, default: 1, description: "Parallel requests the backend runs (Ollama's OLLAMA_NUM_PARALLEL)" }),
  connectTimeoutMs: Ms(5000, 'TCP connect timeout'),
  firstByteTimeoutMs: Ms(300000, 'Wait for response headers (model load + prompt eval)'),
  idleTimeoutMs: Ms(120000, 'Longest gap between two streamed chunks'),
}, { additionalProperties: false })

export const ModelsSchema = Type.Object({
  aliases: Type.Record(Type.String(), Type.String({ minLength: 1 }), { default: {}, description: 'alias: model, e.g. default: llama3.1:8b' }),
}, { additionalProperties: false, default: {} })

export const RoutingSchema = Type.Object({
  maxWaiting: Type.Integer({ minimum: 0, default: 64, description: 'Requests queued per model when every slot is busy' }),
  queueTimeoutMs: Ms(30000, 'Longest wait in the queue before 503'),
  discoveryIntervalMs: Type.Integer({ minimum: 100, default: 15000, description: 'Model discovery and active health probe interval' }),
  retries: Type.Integer({ minimum: 0, default: 2, description: 'Other backends tried before the first byte' }),
  downBackoffMs: Type.Integer({ minimum: 1, default: 1000, description: 'First backoff after a backend fails; doubles up to 60 s' }),
  keepAliveMs: Type.Integer({ minimum: 10, default: 10000, description: 'SSE comment interval while waiting for the first token' }),
}, { additionalProperties: false, default: {} })

export const MetricsSchema = Type.Object({
  enabled: Type.Boolean({ default: true, description: 'Serve Prometheus metrics at /metrics' }),
  listen: Type.Optional(Type.Object({
    host: Type.String({ default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, description: 'a port of its own (0 picks a free one)' }),
  }, { additionalProperties: false, description: 'Serve /metrics only here, plain HTTP and without credentials (for a scraper on a private network); without it /metrics is on the main port for admins' })),
}, { additionalProperties: false, default: {} })

export const DocsSchema = Type.Object({
  enabled: Type.Boolean({ default: true, description: 'Serve the OpenAPI description of every route and its browsable UI' }),
  path: Type.String({ pattern: '^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$', default: '/docs', description: 'path like /docs (the UI; the OpenAPI JSON at <path>/json)' }),
}, { additionalProperties: false, default: {} })

export const LogSchema = Type.Object({
  level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
}, { additionalProperties: false, default: {} })

export const RedisSchema = Type.Object({
  url: Type.String({ pattern: '^(rediss?|unix)://', description: 'redis://[:password@]host:port[/db]; rediss:// for TLS; unix:///path/to/redis.sock' }),
  keyPrefix: Type.String({ default: 'chatgate:', description: 'Prefix of every key ChatGate writes' }),
  onError: Type.Union([Type.Literal('closed'), Type.Literal('open')], {
    default: 'closed', description: 'Redis unreachable or answering with an error: closed refuses limited requests (503), open lets them through unlimited',
  }),
  connectTimeoutMs: Ms(2000, 'Connect timeout; commands fail at once while disconnected'),
}, { additionalProperties: false, description: 'Limits, reservations and counters shared by several ChatGate replicas' })

export const StoreSchema = Type.Object({
  dir: Type.String({ minLength: 1, default: 'data', description: 'The SQLite store (users, keys, usage) and generated secrets (relative to the working directory)' }),
  usageFlushMs: Type.Integer({ minimum: 10, default: 1000, description: 'Usage records are written in batches at this interval (and on shutdown)' }),
  redis: Type.Optional(RedisSchema),
}, { additionalProperties: false, default: {} })

const CertificateFiles = Type.Object({
  certFile: Type.String({ minLength: 1, description: 'PEM certificate chain (leaf first)' }),
  keyFile: Type.String({ minLength: 1, description: 'PEM private key of the leaf' }),
}, { additionalProperties: false })

export const AcmeSchema = Type.Object({
  directoryUrl: Type.Optional(HttpUrl),
  staging: Type.Boolean({ default: false, description: "Let's Encrypt staging (untrusted certificates; try it first)" }),
  caFile: Type.Optional(Type.String({ minLength: 1, description: "PEM trusted for the ACME server's own HTTPS (a private CA)" })),
  eab: Type.Optional(Type.Object({
    kid: Type.String({ minLength: 1 }),
    hmacKey: Type.String({ minLength: 1, description: 'base64url HMAC key from the CA' }),
  }, { additionalProperties: false, description: 'External Account Binding, for CAs that require it' })),
  challenge: Type.Union([Type.Literal('http-01'), Type.Literal('dns-01')], { default: 'http-01', description: 'Wildcard names need dns-01' }),
  dnsHook: Type.Optional(Type.String({ minLength: 1, description: 'dns-01: command run as `<hook> present|cleanup <record name> <value>`' })),
  selfCheck: Type.Boolean({ default: true, description: 'Check the challenge is reachable before asking the CA to validate it' }),
  renewCheckIntervalMs: Type.Integer({ minimum: 1000, default: 600_000, description: 'How often certificates are checked for renewal (with jitter)' }),
  retryMinMs: Type.Integer({ minimum: 100, default: 60_000, description: 'First wait after a failed order; doubles' }),
  retryMaxMs: Type.Integer({ minimum: 100, default: 6 * 3600_000, description: 'Longest wait between failed orders' }),
}, { additionalProperties: false, default: {} })

export const TlsSchema = Type.Object({
  mode: Type.Union([Type.Literal('off'), Type.Literal('manual'), Type.Literal('acme'), Type.Literal('self-signed')], {
    default: 'off', description: 'off: plain HTTP; manual: certificate files; acme: certificates from an ACME CA; self-signed: generated once',
  }),
  names: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'acme / self-signed: the DNS names served (one certificate)' }),
  certificates: Type.Array(Type.Union([CertificateFiles, Type.Object({ names: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }) }, { additionalProperties: false })]), {
    default: [], description: 'manual: certificate files; acme: further certificates, each a list of names',
  }),
  email: Type.Optional(Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$', description: 'ACME account contact' })),
  acme: AcmeSchema,
  httpPort: Type.Integer({ minimum: 0, maximum: 65535, default: 80, description: 'Plain HTTP: ACME HTTP-01 answers, everything else redirected (308) to HTTPS' }),
  hsts: Type.Object({
    enabled: Type.Boolean({ default: false }),
    maxAge: Type.Integer({ minimum: 0, default: 31_536_000 }),
    includeSubDomains: Type.Boolean({ default: false }),
  }, { additionalProperties: false, default: {} }),
}, { additionalProperties: false, default: {}, description: 'HTTPS. With a mode other than off, server.port is the HTTPS port (443 in production)' })

export const ConfigSchema = Type.Object({
  server: ServerSchema,
  tls: TlsSchema,
  auth: AuthSchema,
  limits: LimitsSchema,
  backends: Type.Array(BackendSchema, { minItems: 1 }),
  models: ModelsSchema,
  routing: RoutingSchema,
  proxy: ProxySchema,
  biochatter: BioChatterSchema,
  store: StoreSchema,
  metrics: MetricsSchema,
  docs: DocsSchema,
  log: LogSchema,
}, { additionalProperties: false, $id: 'https://chatgate.dev/config.schema.json', title: 'ChatGate configuration' })

export type Config = Static<typeof ConfigSchema>
export type BackendConfig = Static<typeof BackendSchema>
export type TlsConfig = Static<typeof TlsSchema>
export type Role = Static<typeof Role>
export type UserLimitsConfig = Static<typeof UserLimits>
export type RedisConfig = Static<typeof RedisSchema>
export type BioChatterConfig = Static<typeof BioChatterSchema>
