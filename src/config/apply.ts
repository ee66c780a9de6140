import type { FastifyBaseLogger } from 'fastify'
import type { Gateway } from '../context.js'
import type { Config } from './schema.js'

// What a reload can change while the gateway runs, and how. The backends, aliases and routing go
// to the pool; limits, model access and the config file's users to their owners; the log level
// to the logger. Everything else (listeners, TLS, the store, signing keys, proxied apps…) is
// built into the running server and takes effect on the next start: a reload says so.

/** Parts of the config a reload applies, by path. */
const RELOADABLE = ['backends', 'models', 'routing', 'limits', 'auth.users', 'auth.modelAccess', 'log'] as const

type Tree = Record<string, unknown>
const isTree = (v: unknown): v is Tree => v !== null && typeof v === 'object' && !Array.isArray(v)

/** The paths where two configs differ: down to single settings, a list counted as one. */
export function changedPaths (before: unknown, after: unknown, path = ''): string[] {
  if (isTree(before) && isTree(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)])
    return [...keys].flatMap((k) => changedPaths(before[k], after[k], path === '' ? k : `${path}.${k}`))
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [path]
}

const isReloadable = (path: string): boolean => RELOADABLE.some((p) => path === p || path.startsWith(`${p}.`))

/** The config that runs after a reload: the RELOADABLE parts of `next`, the rest as it runs now. */
function effective (running: Config, next: Config): Config {
  const config: Record<string, unknown> = { ...running }
  const from: Record<string, unknown> = next
  for (const path of RELOADABLE) {
    const [section, key] = path.split('.') as [string, string | undefined]
    if (key === undefined) config[section] = from[section]
    else config[section] = { ...(config[section] as Tree), [key]: (from[section] as Tree)[key] }
  }
  return config as Config
}

export interface Applied {
  /** Settings that changed and now apply. */
  applied: string[]
  /** Settings that changed but wait for a restart. */
  restartRequired: string[]
  /** Resolves when backends the reload added know what they serve. */
  discovered: Promise<void>
}

/**
 * Swaps in `next` in one synchronous step, so no request sees half of it: requests from here on
 * use the new backends, limits and rules; requests already running keep the backend they hold.
 */
export function applyConfig (gateway: Gateway, log: FastifyBaseLogger, next: Config): Applied {
  const running = gateway.config
  const changed = changedPaths(running, next)
  const restartRequired = changed.filter((p) => !isReloadable(p))
  const applied = changed.filter(isReloadable)
  const config = effective(running, next)
  gateway.config = config
  const discovered = gateway.pool.reconfigure(config)
  gateway.relay.retries = config.routing.retries
  gateway.relay.keepAliveMs = config.routing.keepAliveMs
  gateway.access.setPatterns(config.auth.modelAccess)
  gateway.users.setConfigUsers(config.auth.users)
  gateway.quotas.setLimits(config.limits)
  log.level = config.log.level
  return { applied, restartRequired, discovered }
}
