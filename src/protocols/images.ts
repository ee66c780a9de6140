import { GatewayError } from '../errors.js'

// Ollama carries images as bare base64; OpenAI as data: URLs in content parts.

const SIGNATURES: Array<[string, string]> = [
  ['iVBOR', 'image/png'], ['/9j/', 'image/jpeg'], ['R0lGOD', 'image/gif'], ['UklGR', 'image/webp'],
]

export function base64ToDataUrl (base64: string): string {
  const mime = SIGNATURES.find(([prefix]) => base64.startsWith(prefix))?.[1] ?? 'image/jpeg'
  return `data:${mime};base64,${base64}`
}

/** A data: URL's base64 payload. Remote URLs are refused: the gateway never fetches for a client. */
export function dataUrlToBase64 (url: string): string {
  const match = /^data:[^;,]*;base64,/.exec(url)
  if (match === null) throw new GatewayError(400, 'image_url must be a data: URL with base64 content for this model\'s backend', 'invalid_image')
  return url.slice(match[0].length)
}
