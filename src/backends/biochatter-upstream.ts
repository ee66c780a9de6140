import { request } from 'undici'
import { CODE_UNKNOWN } from '../protocols/biochatter/response.js'

// A biochatter-server behind ChatGate for the RAG and KG routes (vector store documents, Neo4j
// status). Bodies go on as the frontend sent them. The caller's ChatGate credential is never
// passed on: biochatter-server would take a non-empty key for an OpenAI key, and with an empty
// one it uses its own server key, which is what the upstream's admin configured.

export interface UpstreamAnswer {
  /** The upstream's JSON answer, or the error form when it could not give one. */
  body: unknown
  /** The upstream could not be reached or answered something other than JSON. */
  failed: boolean
}

export class BioChatterUpstream {
  constructor (private readonly baseUrl: string, private readonly timeoutMs: number) {}

  /** `text`: the frontend's own JSON, sent on byte for byte (none: `{}`). */
  async call (method: 'POST' | 'DELETE', path: string, text: string | undefined): Promise<UpstreamAnswer> {
    try {
      const res = await request(`${this.baseUrl.replace(/\/+$/, '')}${path}`, {
        method,
        headers: { 'content-type': 'application/json', authorization: '' },
        body: text ?? '{}',
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      })
      const answer = await res.body.text()
      try {
        return { body: JSON.parse(answer), failed: false }
      } catch {
        return { body: { error: `RAG/KG server answered HTTP ${res.statusCode} without JSON`, code: CODE_UNKNOWN }, failed: true }
      }
    } catch (err) {
      return { body: { error: `RAG/KG server unreachable: ${(err as Error).message}`, code: CODE_UNKNOWN }, failed: true }
    }
  }
}
