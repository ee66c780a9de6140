import { withoutSecrets } from '../logging.js'
import type { Config } from './schema.js'

// The running config as admins may see it (the dashboard): every secret replaced. Fields are
// found by name rather than listed one by one, so that a secret added to the schema later is
// hidden without anyone remembering this file: auth.jwt.secret, backends[].apiKey,
// auth.users[].passwordHash, tls.acme.eab.hmacKey, auth.signIn.providers[].clientSecret, and
// credentials inside URLs (store.redis.url, biochatter.upstream, backends[].url).

export const REDACTED = '[redacted]'

/** Keys whose values are secrets, whatever object they are in. */
const SECRET_KEY = /(secret|password|passwordhash|apikey|hmackey|token|authorization|cookie|credentials?)$/i
/** Objects whose every value is a header value (a proxy's added headers may carry keys). */
const HEADERS_KEY = /headers$/i
/** `scheme://user:password@` in any string: the whole user part goes. */
const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/i
function redactString (text: string): string {
  // `?password=…`, `&token=…` and the like: the request log's own rule.
  return withoutSecrets(text.replace(URL_USERINFO, `$1${REDACTED}@`))
}

function redactValue (value: unknown): unknown {
  if (typeof value === 'string') return redactString(value)
  if (Array.isArray(value)) return value.map(redactValue)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, inner] of Object.entries(value)) {
      if (SECRET_KEY.test(key) && inner !== undefined && inner !== null) out[key] = REDACTED
      else if (HEADERS_KEY.test(key) && inner !== null && typeof inner === 'object' && !Array.isArray(inner)) {
        out[key] = Object.fromEntries(Object.keys(inner).map((name) => [name, REDACTED]))
      } else out[key] = redactValue(inner)
    }
    return out
  }
  return value
}

/** A deep copy of the config with every secret replaced by "[redacted]"; the config is untouched. */
export function redactConfig (config: Config): Record<string, unknown> {
  return redactValue(config) as Record<string, unknown>
}
