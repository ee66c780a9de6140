import type { BackendConfig } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import type { Backend } from './backend.js'

const TITLE: Record<BackendConfig['type'], string> = { ollama: 'Ollama', xinference: 'Xinference', openai: 'OpenAI-compatible' }

/**
 * The backend an admin's model-management request is for: the one named by `?backend=`, or the
 * only one of its type. A clear 400/404 otherwise.
 */
export function managedBackend (backends: Backend[], name: string | undefined, type: BackendConfig['type']): Backend {
  const ofType = backends.filter((b) => b.config.type === type)
  if (name === undefined) {
    if (ofType.length === 1) return ofType[0]!
    if (ofType.length === 0) throw new GatewayError(400, `no ${TITLE[type]} backend is configured`)
    throw new GatewayError(400, `name the ${TITLE[type]} backend with ?backend=<name> (one of: ${ofType.map((b) => b.name).join(', ')})`)
  }
  const backend = backends.find((b) => b.name === name)
  if (backend === undefined) throw new GatewayError(404, `no backend named '${name}'`, 'backend_not_found')
  if (backend.config.type !== type) throw new GatewayError(400, `backend '${name}' is not an ${TITLE[type]} backend`)
  return backend
}
