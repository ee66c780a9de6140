import type { Db } from '../store/database.js'

// STUB — to be replaced: login sessions and their rotating refresh tokens.
export class Sessions {
  constructor (readonly db: Db) {}
}
