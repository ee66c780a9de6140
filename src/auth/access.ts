import type { Role } from '../config/schema.js'

/** Who asks: a role, and for an API key with an allow-list, its own patterns. */
export interface Grantee { role: Role, models?: string[] | undefined }

function globToRegExp (glob: string): RegExp {
  const body = glob.split('').map((c) => c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('')
  return new RegExp(`^${body}$`)
}

/** Which models each role may use, from `auth.modelAccess` glob patterns. */
export class ModelAccess {
  private rules!: Record<Role, RegExp[]>

  constructor (patterns: Record<Role, string[]>) {
    this.setPatterns(patterns)
  }

  /** The rules from now on (a config reload). */
  setPatterns (patterns: Record<Role, string[]>): void {
    this.rules = { user: patterns.user.map(globToRegExp), admin: patterns.admin.map(globToRegExp) }
  }

  private readonly keyRules = new Map<string, RegExp[]>()

  /** The role's rules, and the key's allow-list when it has one: a key never widens its role. */
  allows (who: Grantee, model: string): boolean {
    if (!this.rules[who.role].some((re) => re.test(model))) return false
    if (who.models === undefined) return true
    const key = who.models.join('\n')
    let rules = this.keyRules.get(key)
    if (rules === undefined) {
      rules = who.models.map(globToRegExp)
      this.keyRules.set(key, rules)
    }
    return rules.some((re) => re.test(model))
  }
}
