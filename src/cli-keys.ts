import { ApiKeys, keyRole, type ApiKey, type KeyLimits } from './auth/api-keys.js'
import { parseTtl } from './auth/ttl.js'
import { Users } from './auth/users.js'
import { loadConfig } from './config/load.js'
import { openDatabase } from './store/database.js'

// `chatgate keys create|list|revoke`: API keys straight in the store (SQLite allows it next to
// a running gateway), with --json for scripts.

export const KEYS_HELP = `Usage: chatgate keys create --owner NAME [--role user|admin] [--name TEXT] [--models GLOB,…] [--ttl 90d]
                            [--rpm N] [--tokens-per-day N] [--tokens-per-month N] [--json]
       chatgate keys list [--owner NAME] [--json]
       chatgate keys revoke ID [--json]

Manages API keys in the store of the config's store.dir. A created key is printed once; only a
hash of it is kept. The owner must be a user (of the store or of auth.users); the key's role is
the owner's unless --role narrows it. --models narrows the key to model patterns; --ttl gives it
an expiry; --rpm, --tokens-per-day and --tokens-per-month give it limits of its own, on top of
its owner's. An owner's active keys have distinct names.`

export interface KeysOptions {
  owner?: string, role?: string, name?: string, models?: string, ttl?: string, json?: boolean
  rpm?: string, 'tokens-per-day'?: string, 'tokens-per-month'?: string
}

export class KeysUsageError extends Error {}

function limitsText (limits: KeyLimits | undefined): string {
  if (limits === undefined) return '-'
  const parts = [['rpm', limits.requestsPerMinute], ['day', limits.tokensPerDay], ['month', limits.tokensPerMonth]]
  return parts.filter(([, n]) => n !== undefined).map(([what, n]) => `${what}=${n}`).join(',')
}

function line (k: ApiKey): string {
  const state = k.revokedAt !== undefined ? 'revoked' : k.expiresAt !== undefined && Date.parse(k.expiresAt) <= Date.now() ? 'expired' : 'active'
  return [k.id, `${k.prefix}…`, k.owner, k.role, state, k.expiresAt ?? '-', k.models?.join(',') ?? '*', limitsText(k.limits), k.name].join('\t')
}

/** A non-negative integer flag, or undefined when absent. */
function count (flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new KeysUsageError(`--${flag} "${text}" is not a whole number`)
  return Number(text)
}

function limitsFrom (o: KeysOptions): KeyLimits | undefined {
  const limits: KeyLimits = {
    ...(o.rpm !== undefined && { requestsPerMinute: count('rpm', o.rpm) }),
    ...(o['tokens-per-day'] !== undefined && { tokensPerDay: count('tokens-per-day', o['tokens-per-day']) }),
    ...(o['tokens-per-month'] !== undefined && { tokensPerMonth: count('tokens-per-month', o['tokens-per-month']) }),
  }
  return Object.keys(limits).length === 0 ? undefined : limits
}

/** Runs a keys subcommand; returns what to print. */
export function runKeys (configFile: string, positionals: string[], o: KeysOptions): string {
  const [action, id] = positionals
  const config = loadConfig(configFile)
  const db = openDatabase(config.store.dir)
  try {
    const keys = new ApiKeys(db)
    switch (action) {
      case 'create': {
        if (o.owner === undefined || o.owner === '') throw new KeysUsageError('--owner NAME is required')
        const role = o.role
        if (role !== undefined && role !== 'user' && role !== 'admin') throw new KeysUsageError('--role must be user or admin')
        const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl)
        if (o.ttl !== undefined && ttl === undefined) throw new KeysUsageError(`--ttl "${o.ttl}" is not a duration like 30d`)
        const models = o.models?.split(',').map((m) => m.trim()).filter((m) => m !== '')
        const limits = limitsFrom(o)
        const { key, record } = keys.create({
          owner: o.owner, role: keyRole(new Users(db, config.auth.users), o.owner, role), name: o.name, createdBy: 'cli',
          ...(models !== undefined && models.length > 0 && { models }),
          ...(ttl !== undefined && { expiresAt: new Date(Date.now() + ttl * 1000) }),
          ...(limits !== undefined && { limits }),
        })
        return o.json === true ? JSON.stringify({ key, ...record }) : `${key}\n(id ${record.id}; shown once, keep it now)`
      }
      case 'list': {
        const list = keys.list(o.owner)
        return o.json === true ? JSON.stringify(list) : ['id\tkey\towner\trole\tstate\texpires\tmodels\tlimits\tname', ...list.map(line)].join('\n')
      }
      case 'revoke': {
        if (id === undefined) throw new KeysUsageError('keys revoke needs the key id')
        if (keys.get(id) === undefined) throw new KeysUsageError(`no API key ${id}`)
        if (!keys.revoke(id)) throw new KeysUsageError(`API key ${id} is already revoked`)
        return o.json === true ? JSON.stringify(keys.get(id)) : `revoked ${id}`
      }
      default:
        throw new KeysUsageError(`keys needs create, list or revoke\n\n${KEYS_HELP}`)
    }
  } finally {
    db.close()
  }
}
