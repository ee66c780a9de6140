import { stringify } from 'yaml'
import { ModelAccess } from './auth/access.js'
import { Pool } from './backends/pool.js'
import { loadConfig } from './config/load.js'
import type { Role } from './config/schema.js'
import { listModels } from './routes/listing.js'

export const BIOCHATTER_HELP = `Usage: chatgate biochatter-models [--role user|admin] [--config FILE]

Asks every backend of the config which models it serves (as the gateway's discovery does) and
prints the LLMModels block for the BioChatter Next frontend's config file
(CUSTOM_BIOCHATTER_NEXT_FILE): the models and aliases a caller of the role (default user) may use.
A backend that does not answer is named on standard error; its models are left out.`

export class BioChatterUsageError extends Error {}

export async function biochatterModels (configFile: string, roleOption: string | undefined): Promise<{ yaml: string, unreachable: string[] }> {
  const role = (roleOption ?? 'user') as Role
  if (role !== 'user' && role !== 'admin') throw new BioChatterUsageError('--role must be user or admin')
  const config = loadConfig(configFile)
  const pool = new Pool(config)
  try {
    await pool.refresh()
    const models = await listModels(pool, new ModelAccess(config.auth.modelAccess), { role })
    const unreachable = pool.backends.filter((b) => !b.discovered).map((b) => `${b.name} (${b.config.url})`)
    return { yaml: stringify({ LLMModels: models.map((m) => ({ name: m.name, available: true })) }), unreachable }
  } finally {
    await pool.close()
  }
}
