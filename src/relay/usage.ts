import type { ChatRequest, Usage } from '../protocols/internal.js'

/** What one chat did, for the request log line (and later quotas and accounting). */
export interface ChatRecord {
  model: string
  backend?: string
  ttftMs?: number
  usage?: Usage
  /** Usage was estimated because the backend reported none. */
  estimated?: boolean
  attempts: number
}

// Backends that report no usage still get counted: about four characters a token for the prompt,
// one token a streamed piece for the answer.
function estimatePromptTokens (request: ChatRequest): number {
  const chars = request.messages.reduce((n, m) => n + m.content.length, 0)
  return Math.max(1, Math.ceil(chars / 4))
}

export function usageOrEstimate (reported: Usage | undefined, request: ChatRequest, completionTokens: number, record: ChatRecord): Usage {
  if (reported !== undefined) {
    record.usage = reported
    return reported
  }
  const usage = { promptTokens: estimatePromptTokens(request), completionTokens }
  record.usage = usage
  record.estimated = true
  return usage
}
