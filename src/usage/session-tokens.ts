import type { Statement } from 'better-sqlite3'
import type { Db } from '../store/database.js'
import { utcDay } from './usage-log.js'

// Today's token totals as the BioChatter Next frontend asks for them (/v1/tokenusage): by chat
// session, by caller, by model, any combination. Values only travel as bound parameters.

export interface SessionFilter {
  user?: string | undefined
  session?: string | undefined
  model?: string | undefined
}

export interface TokenTotals { prompt_tokens: number, completion_tokens: number, total_tokens: number }

export class SessionTokens {
  private readonly statements = new Map<string, Statement>()

  constructor (private readonly db: Db) {}

  today (filter: SessionFilter, now = Date.now()): TokenTotals {
    const fields = (['user', 'session', 'model'] as const).filter((f) => filter[f] !== undefined)
    const shape = fields.join(',')
    let statement = this.statements.get(shape)
    if (statement === undefined) {
      const where = ['day = ?', ...fields.map((f) => `${f} = ?`)].join(' AND ')
      statement = this.db.prepare(`SELECT COALESCE(SUM(prompt_tokens), 0) AS p, COALESCE(SUM(completion_tokens), 0) AS c FROM usage WHERE ${where}`)
      this.statements.set(shape, statement)
    }
    const row = statement.get(utcDay(now), ...fields.map((f) => filter[f])) as { p: number, c: number }
    return { prompt_tokens: row.p, completion_tokens: row.c, total_tokens: row.p + row.c }
  }
}
