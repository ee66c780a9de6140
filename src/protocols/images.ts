import { GatewayError } from '../errors.js'

// Ollama carries images as bare base64; OpenAI as URLs in content parts (data: URLs, or remote
// URLs that only an OpenAI-compatible backend may fetch). Internally an image is either.

const SIGNATURES: Array<[string, string]> = [
  ['iVBOR', 'image/png'], ['/9j/', 'image/jpeg'], ['R0lGOD', 'image/gif'], ['UklGR', 'image/webp'],
]
const DATA_URL = /^data:[^;,]*;base64,/
const REMOTE_URL = /^https?:\/\//i

/** An image as OpenAI carries it: remote URLs stay, base64 becomes a data: URL. */
export function toImageUrl (image: string): string {
  if (REMOTE_URL.test(image)) return image
  const mime = SIGNATURES.find(([prefix]) => image.startsWith(prefix))?.[1] ?? 'image/jpeg'
  return `data:${mime};base64,${image}`
}

/** An image URL from an OpenAI client, kept as base64 when it carries its data. */
export function fromImageUrl (url: string): string {
  const match = DATA_URL.exec(url)
  if (match !== null) return url.slice(match[0].length)
  if (REMOTE_URL.test(url)) return url
  throw new GatewayError(400, 'image_url must be an http(s) URL or a data: URL with base64 content', 'invalid_image')
}

/** Base64 for Ollama, which cannot fetch: the gateway never fetches a URL for a client either. */
export function toBase64Image (image: string): string {
  if (REMOTE_URL.test(image)) throw new GatewayError(400, 'image_url must be a data: URL with base64 content for this model\'s backend (Ollama does not fetch URLs)', 'invalid_image')
  return image
}
