import type { Backend, ModelEntry } from './backend.js'

// Polling a backend for the models it serves; a successful poll is also its active health probe.

const PROBE_TIMEOUT_MS = 5000

async function getJson (backend: Backend, path: string): Promise<unknown> {
  const res = await backend.request({
    method: 'GET',
    path,
    headers: backend.headers(),
    headersTimeout: PROBE_TIMEOUT_MS,
    bodyTimeout: PROBE_TIMEOUT_MS,
  })
  if (res.statusCode !== 200) {
    await res.body.dump()
    throw new Error(`GET ${path} answered ${res.statusCode}`)
  }
  return res.body.json()
}

function listOf (value: unknown, key: 'models' | 'data'): Array<Record<string, unknown>> {
  const list = (value as Record<string, unknown> | null)?.[key]
  return Array.isArray(list) ? list.filter((m): m is Record<string, unknown> => m !== null && typeof m === 'object') : []
}

async function discoverOllama (backend: Backend): Promise<void> {
  const [tags, ps, version] = await Promise.all([
    getJson(backend, '/api/tags'),
    getJson(backend, '/api/ps'),
    getJson(backend, '/api/version').catch(() => undefined),
  ])
  const models = new Map<string, ModelEntry>()
  for (const listing of listOf(tags, 'models')) {
    const name = String(listing.name ?? listing.model ?? '')
    if (name === '') continue
    const entry = { upstream: name, listing }
    models.set(name, entry)
    if (name.endsWith(':latest')) models.set(name.slice(0, -':latest'.length), entry)
  }
  backend.models = models
  backend.loaded = new Set(listOf(ps, 'models').map((m) => String(m.name ?? m.model)))
  const v = (version as { version?: unknown } | undefined)?.version
  if (typeof v === 'string') backend.version = v
}

async function discoverOpenAI (backend: Backend): Promise<void> {
  const models = new Map<string, ModelEntry>()
  const list = listOf(await getJson(backend, '/v1/models'), 'data')
  for (const listing of list) {
    const uid = String(listing.id ?? '')
    if (uid === '') continue
    const entry = { upstream: uid, listing }
    models.set(uid, entry)
    // Xinference: clients may name the model (model_name) while requests must carry the uid.
    const name = listing.model_name
    if (typeof name === 'string' && !models.has(name)) models.set(name, entry)
  }
  backend.models = models
  // Xinference and OpenAI-compatible servers list running models only: all are loaded.
  backend.loaded = new Set(list.map((m) => String(m.id)))
}

/** Refreshes one backend's models; marks it up or down. Never throws. */
export async function discover (backend: Backend): Promise<void> {
  try {
    if (backend.protocol === 'ollama') await discoverOllama(backend)
    else await discoverOpenAI(backend)
    backend.discovered = true
    backend.markUp()
  } catch (err) {
    backend.markDown(`discovery failed: ${(err as Error).message}`)
  }
}
