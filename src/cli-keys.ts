import { ApiKeys, type ApiKey } from './auth/api-keys.js'
import { parseTtl } from './auth/ttl.js'
import { loadConfig } from './config/load.js'
import { openDatabase } from './store/database.js'

// `chatgate keys create|list|revoke`: API keys straight in the store (SQLite allows it next to
// a running gateway), with --json for scripts.

export const KEYS_HELP = `Usage: chatgate keys create --owner NAME [--role user|admin] [--name TEXT] [--models GLOB,…] [--ttl 90d] [--json]
       chatgate keys list [--owner NAME] [--json]
       chatgate keys revoke ID [--json]

Manages API keys in the store of the config's store.dir. A created key is printed once; only a
hash of it is kept. --models narrows the key to model patterns; --ttl gives it an expiry.`

export interface KeysOptions { owner?: string, role?: string, name?: string, models?: string, ttl?: string, json?: boolean }

export class KeysUsageError extends Error {}

function line (k: ApiKey): string {
  const state = k.revokedAt !== undefined ? 'revoked' : k.expiresAt !== undefined && Date.parse(k.expiresAt) <= Date.now() ? 'expired' : 'active'
  return [k.id, `${k.prefix}…`, k.owner, k.role, state, k.expiresAt ?? '-', k.models?.join(',') ?? '*', k.name].join('\t')
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
        const role = o.role ?? 'user'
        if (role !== 'user' && role !== 'admin') throw new KeysUsageError('--role must be user or admin')
        const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl)
        if (o.ttl !== undefined && ttl === undefined) throw new KeysUsageError(`--ttl "${o.ttl}" is not a duration like 30d`)
        const models = o.models?.split(',').map((m) => m.trim()).filter((m) => m !== '')
        const { key, record } = keys.create({
          owner: o.owner, role, name: o.name, createdBy: 'cli',
          ...(models !== undefined && models.length > 0 && { models }),
          ...(ttl !== undefined && { expiresAt: new Date(Date.now() + ttl * 1000) }),
        })
        return o.json === true ? JSON.stringify({ key, ...record }) : `${key}\n(id ${record.id}; shown once, keep it now)`
      }
      case 'list': {
        const list = keys.list(o.owner)
        return o.json === true ? JSON.stringify(list) : ['id\tkey\towner\trole\tstate\texpires\tmodels\tname', ...list.map(line)].join('\n')
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
