import { readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'
import { Value } from '@sinclair/typebox/value'
import { SetErrorFunction, DefaultErrorFunction, ValueErrorType } from '@sinclair/typebox/errors'
import { nameProblem } from '../tls/names.js'
import { docsProblems, proxyProblems } from './proxy-schema.js'
import { signInProblems } from './sign-in-schema.js'
import { cidrProblem } from '../auth/trusted-networks.js'
import { ConfigSchema, type Config } from './schema.js'

/** A config file that cannot be used; `problems` names each one by its path. */
export class ConfigError extends Error {
  constructor (readonly file: string, readonly problems: string[]) {
    super(`invalid config ${file}:\n  ${problems.join('\n  ')}`)
  }
}

export const DEFAULT_CONFIG_PATH = 'config/chatgate.yaml'

export function configPathFrom (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.CHATGATE_CONFIG ?? DEFAULT_CONFIG_PATH
}

// Messages in the words an admin reads: "must be …" rather than TypeBox's "Expected …".
SetErrorFunction((error) => {
  const schema = error.schema as { pattern?: string, description?: string, anyOf?: Array<{ const?: unknown }>, expected?: string }
  if (error.errorType === ValueErrorType.StringPattern && schema.description !== undefined) {
    return `must be ${schema.description.startsWith('http') ? 'an ' : ''}${schema.description}`
  }
  if (error.errorType === ValueErrorType.Union && schema.anyOf?.every((s) => 'const' in s) === true) {
    return `must be one of: ${schema.anyOf.map((s) => String(s.const)).join(', ')}`
  }
  // A union of several kinds says what it takes in its own words.
  if (error.errorType === ValueErrorType.Union && schema.expected !== undefined) return `must be ${schema.expected}`
  if (error.errorType === ValueErrorType.ObjectAdditionalProperties) return 'unknown key'
  return DefaultErrorFunction(error).replace(/^Expected/, 'must be').replace(/^Required property$/, 'is required')
})

/** `/backends/1/url` → `backends[1].url` */
function displayPath (pointer: string): string {
  return pointer.split('/').slice(1).reduce((out, part) =>
    /^\d+$/.test(part) ? `${out}[${part}]` : out === '' ? part : `${out}.${part}`, '') || '(root)'
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/** Replaces `${NAME}` (or `${NAME:-fallback}`) in every string value; unset names are problems. */
function substituteEnv (value: unknown, env: NodeJS.ProcessEnv, path: string, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name] ?? fallback
      if (v === undefined) problems.push(`${displayPath(path)}: environment variable ${name} is not set`)
      return v ?? ''
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, `${path}/${i}`, problems))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, `${path}/${k}`, problems)]))
  }
  return value
}

/** Rules that a schema cannot say. */
function crossCheck (config: Config): string[] {
  const problems: string[] = []
  const seen = new Map<string, number>()
  config.backends.forEach((b, i) => {
    if (seen.has(b.name)) problems.push(`backends[${i}].name: "${b.name}" is already used by backends[${seen.get(b.name)}]`)
    seen.set(b.name, i)
  })
  problems.push(...proxyProblems(config.proxy), ...docsProblems(config))
  problems.push(...signInProblems(config.auth.signIn))
  const checkCidrs = (cidrs: string[], path: string): void => cidrs.forEach((cidr, i) => {
    const problem = cidrProblem(cidr)
    if (problem !== undefined) problems.push(`${path}[${i}]: "${cidr}" ${problem}`)
  })
  checkCidrs(config.auth.trustedNetworks.cidrs, 'auth.trustedNetworks.cidrs')
  if (Array.isArray(config.server.trustProxy)) checkCidrs(config.server.trustProxy, 'server.trustProxy')
  const users = new Set<string>()
  config.auth.users.forEach((u, i) => {
    if (users.has(u.username)) problems.push(`auth.users[${i}].username: "${u.username}" appears twice`)
    users.add(u.username)
  })
  for (const [alias, target] of Object.entries(config.models.aliases)) {
    if (target in config.models.aliases) problems.push(`models.aliases.${alias}: points at another alias ("${target}"); name a model`)
  }
  const jwt = config.auth.jwt
  if (jwt.algorithm === 'HS256' && (jwt.publicKeyFile !== undefined || jwt.privateKeyFile !== undefined)) {
    problems.push('auth.jwt: key files are for RS256/ES256/EdDSA; HS256 uses auth.jwt.secret')
  }
  if (jwt.algorithm !== 'HS256') {
    if (jwt.publicKeyFile === undefined) problems.push(`auth.jwt.publicKeyFile: is required for ${jwt.algorithm}`)
    if (jwt.secret !== undefined) problems.push(`auth.jwt.secret: only HS256 uses a secret; ${jwt.algorithm} uses key files`)
  }
  problems.push(...tlsProblems(config))
  return problems
}

function tlsProblems (config: Config): string[] {
  const tls = config.tls
  const problems: string[] = []
  const checkNames = (names: string[], where: string): void => {
    names.forEach((n, i) => {
      const problem = nameProblem(n, tls.mode === 'acme')
      if (problem !== undefined) problems.push(`${where}[${i}]: "${n}" ${problem}`)
      if (tls.mode === 'acme' && n.startsWith('*.') && tls.acme.challenge !== 'dns-01') problems.push(`${where}[${i}]: wildcard "${n}" needs tls.acme.challenge: dns-01`)
    })
  }
  checkNames(tls.names, 'tls.names')
  tls.certificates.forEach((c, i) => {
    const isFiles = 'certFile' in c
    if (tls.mode === 'manual' && !isFiles) problems.push(`tls.certificates[${i}]: manual mode needs certFile and keyFile`)
    if (tls.mode !== 'manual' && isFiles) problems.push(`tls.certificates[${i}]: certFile/keyFile are for tls.mode: manual`)
    if (!isFiles) checkNames(c.names, `tls.certificates[${i}].names`)
  })
  if (tls.mode === 'manual' && tls.certificates.length === 0) problems.push('tls.certificates: manual mode needs at least one certFile/keyFile pair')
  if ((tls.mode === 'acme' || tls.mode === 'self-signed') && tls.names.length === 0 && tls.certificates.length === 0) problems.push(`tls.names: ${tls.mode} mode needs the names to serve`)
  if (tls.mode === 'acme' && tls.acme.challenge === 'dns-01' && tls.acme.dnsHook === undefined) problems.push('tls.acme.dnsHook: dns-01 needs the command that publishes the TXT record')
  return problems
}

/** Validates a parsed config object, filling in defaults. Throws ConfigError listing every problem. */
export function validateConfig (raw: unknown, file = '(inline)', env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = []
  const substituted = substituteEnv(raw ?? {}, env, '', problems)
  const withDefaults = Value.Default(ConfigSchema, structuredClone(substituted))
  // One problem per path: an unset variable explains the invalid value it leaves behind.
  const seen = new Set(problems.map((p) => p.slice(0, p.indexOf(':'))))
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    const where = displayPath(error.path)
    if (seen.has(where)) continue
    seen.add(where)
    problems.push(`${where}: ${error.message}`)
  }
  if (problems.length > 0) throw new ConfigError(file, problems)
  const config = withDefaults as Config
  const more = crossCheck(config)
  if (more.length > 0) throw new ConfigError(file, more)
  return config
}

/** Reads, parses and validates a YAML config file. */
export function loadConfig (file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as Error).message}`])
  }
  return parseConfig(text, file, env)
}

/** Parses and validates the text of a YAML config file. */
export function parseConfig (text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true })
  if (doc.errors.length > 0) throw new ConfigError(file, doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`))
  return validateConfig(doc.toJS(), file, env)
}
