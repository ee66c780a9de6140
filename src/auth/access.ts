import type { Role } from '../config/schema.js'

function globToRegExp (glob: string): RegExp {
  const body = glob.split('').map((c) => c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('')
  return new RegExp(`^${body}$`)
}

/** Which models each role may use, from `auth.modelAccess` glob patterns. */
export class ModelAccess {
  private readonly rules: Record<Role, RegExp[]>

  constructor (patterns: Record<Role, string[]>) {
    this.rules = { user: patterns.user.map(globToRegExp), admin: patterns.admin.map(globToRegExp) }
  }

  allows (role: Role, model: string): boolean {
    return this.rules[role].some((re) => re.test(model))
  }
}
