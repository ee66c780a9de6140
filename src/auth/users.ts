import type { Config } from '../config/schema.js'
import type { Db } from '../store/database.js'

// STUB — to be replaced: users in the store (and in the config file).
export class Users {
  constructor (readonly db: Db, readonly configUsers: Config['auth']['users']) {}
}
