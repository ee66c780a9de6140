import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ConfigSchema } from './schema.js'

/** The config file's JSON Schema, for editors (YAML language server: `# yaml-language-server: $schema=…`). */
export function configJsonSchema (): string {
  return JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...optionalDefaults(ConfigSchema) as object }, null, 2) + '\n'
}

/** Keys with a default may be left out of the file: they are not "required" for an editor. */
function optionalDefaults (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(optionalDefaults)
  if (schema === null || typeof schema !== 'object') return schema
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) out[key] = optionalDefaults(value)
  const props = out.properties as Record<string, { default?: unknown }> | undefined
  if (Array.isArray(out.required) && props !== undefined) {
    out.required = (out.required as string[]).filter((k) => props[k]?.default === undefined)
    if ((out.required as string[]).length === 0) delete out.required
  }
  return out
}

export const SCHEMA_FILE = fileURLToPath(new URL('../../config/chatgate.schema.json', import.meta.url))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, configJsonSchema())
  process.stdout.write(`wrote ${SCHEMA_FILE}\n`)
}
