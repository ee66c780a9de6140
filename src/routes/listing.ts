import type { Grantee, ModelAccess } from '../auth/access.js'
import type { Pool } from '../backends/pool.js'

/** One model the caller may use, as both model listings need it. */
export interface ListedModel {
  name: string
  created: number
  ownedBy: string
  /** Ollama /api/tags entry (synthesised for other backends). */
  tag: Record<string, unknown>
  aliasOf?: string
  /** Xinference's description of the model (model_type, model_ability…), which its client's get_model reads. */
  description?: Record<string, unknown>
}

/** A Xinference listing entry as a description for callers: without the worker's internal address. */
function describe (listing: Record<string, unknown>): Record<string, unknown> {
  const { address: _address, ...description } = listing
  return description
}

function isoOrNow (value: unknown): string {
  return typeof value === 'string' ? value : new Date(typeof value === 'number' && value > 0 ? value * 1000 : Date.now()).toISOString()
}

function tagEntry (name: string, listing: Record<string, unknown>): Record<string, unknown> {
  if ('digest' in listing) return { ...listing, name, model: name }
  const family = typeof listing.model_family === 'string' ? listing.model_family : ''
  return {
    name,
    model: name,
    modified_at: isoOrNow(listing.created),
    size: 0,
    digest: '',
    details: { parent_model: '', format: String(listing.model_format ?? ''), family, families: family === '' ? null : [family], parameter_size: String(listing.model_size_in_billions ?? ''), quantization_level: String(listing.quantization ?? '') },
  }
}

/** Every model in the pool (deduplicated by name) plus aliases, filtered by the role's access rules. */
export async function listModels (pool: Pool, access: ModelAccess, who: Grantee): Promise<ListedModel[]> {
  if (pool.backends.some((b) => !b.discovered)) await pool.refresh()
  const byName = new Map<string, ListedModel>()
  for (const backend of pool.backends) {
    for (const [key, entry] of backend.models) {
      // Each model once, by the name its backend lists (not the `:latest`-less or model_name keys).
      if (key !== entry.upstream || byName.has(key) || !access.allows(who, key)) continue
      const modified = entry.listing.modified_at
      const created = typeof entry.listing.created === 'number' ? entry.listing.created : typeof modified === 'string' ? Math.floor(Date.parse(modified) / 1000) : 0
      byName.set(key, {
        name: key, created, ownedBy: backend.name, tag: tagEntry(key, entry.listing),
        ...(backend.config.type === 'xinference' && { description: describe(entry.listing) }),
      })
    }
  }
  for (const [alias, target] of Object.entries(pool.aliases)) {
    const model = byName.get(target) ?? byName.get(`${target}:latest`)
    if (model === undefined || byName.has(alias) || !access.allows(who, target)) continue
    byName.set(alias, { ...model, name: alias, ownedBy: 'alias', tag: { ...model.tag, name: alias, model: alias }, aliasOf: target })
  }
  return [...byName.values()]
}
