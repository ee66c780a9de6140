import { Users, type User } from './auth/users.js'
import type { Role } from './config/schema.js'
import { loadConfig } from './config/load.js'
import { openDatabase } from './store/database.js'

// `chatgate users add|list|enable|disable|reset-password|set-role`: users straight in the store,
// next to a running gateway (it reads them on every request, so a change holds from the next one).
// Passwords come on standard input, never as arguments, so they stay out of `ps` and shell history.

export const USERS_HELP = `Usage: echo -n 'password' | chatgate users add NAME [--role user|admin] [--email ADDRESS] [--json]
       chatgate users list [--json]
       chatgate users disable NAME [--json]
       chatgate users enable NAME [--json]
       echo -n 'password' | chatgate users reset-password NAME [--json]
       chatgate users set-role NAME --role user|admin [--json]

Manages the users in the store of the config's store.dir (users of the config file's auth.users
are listed, and changed only in the file). Passwords are read from standard input (one trailing
newline is dropped) and need at least 8 characters. Disabling a user refuses their tokens and API
keys from the next request on and ends their sessions; a new password ends their sessions too.`

export interface UsersOptions { role?: string, email?: string, json?: boolean }

export class UsersUsageError extends Error {}

function line (u: User): string {
  return [u.name, u.role, u.enabled ? 'enabled' : 'disabled', u.source, u.email ?? '-', u.createdAt ?? '-'].join('\t')
}

function roleOf (text: string | undefined): Role | undefined {
  if (text !== undefined && text !== 'user' && text !== 'admin') throw new UsersUsageError('--role must be user or admin')
  return text
}

/** Runs a users subcommand; returns what to print. `readPassword` reads standard input. */
export async function runUsers (configFile: string, positionals: string[], o: UsersOptions, readPassword: () => Promise<string>): Promise<string> {
  const [action, name, ...extra] = positionals
  if (extra.length > 0) throw new UsersUsageError(`unexpected argument "${extra[0]}"`)
  const needsName = (): string => {
    if (name === undefined || name === '') throw new UsersUsageError(`users ${action} needs the user's name`)
    return name
  }
  const password = async (): Promise<string> => {
    const text = await readPassword()
    if (text === '') throw new UsersUsageError('no password on standard input')
    return text
  }
  const show = (user: User, text: string): string => o.json === true ? JSON.stringify(user) : text

  const config = loadConfig(configFile)
  const db = openDatabase(config.store.dir)
  try {
    const users = new Users(db, config.auth.users)
    switch (action) {
      case 'add': {
        const spec = { name: needsName(), role: roleOf(o.role), email: o.email }
        const user = await users.add({ ...spec, password: await password() })
        return show(user, `added ${user.role} ${user.name}`)
      }
      case 'list': {
        const list = users.list()
        return o.json === true ? JSON.stringify(list) : ['name\trole\tstate\tsource\temail\tcreated', ...list.map(line)].join('\n')
      }
      case 'disable': {
        const user = users.setEnabled(needsName(), false)
        return show(user, `disabled ${user.name}: refused from the next request on, sessions ended`)
      }
      case 'enable': {
        const user = users.setEnabled(needsName(), true)
        return show(user, `enabled ${user.name}`)
      }
      case 'reset-password': {
        const who = needsName()
        const user = await users.resetPassword(who, await password())
        return show(user, `new password set for ${user.name}; their sessions are ended`)
      }
      case 'set-role': {
        const who = needsName()
        const role = roleOf(o.role)
        if (role === undefined) throw new UsersUsageError('users set-role needs --role user|admin')
        const user = users.setRole(who, role)
        return show(user, `${user.name} is now ${user.role === 'admin' ? 'an admin' : 'a user'}`)
      }
      default:
        throw new UsersUsageError(`users needs add, list, disable, enable, reset-password or set-role\n\n${USERS_HELP}`)
    }
  } finally {
    db.close()
  }
}
