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
  /** The answer began (HTTP 200) but ended with the protocol's error form. */
  streamFailed?: boolean
  /** Answer pieces (stream frames) written so far: what an aborted stream is charged for. */
  pieces?: number
  /** The handler still runs: usage is recorded when it has settled the figures (`settled`). */
  inFlight?: boolean
  onSettled?: () => void
  /** The BioChatter Next chat session the request belongs to. */
  session?: string
}

/** Runs `fn` once the request's figures are final: now, or when its handler settles them. */
export function whenSettled (record: ChatRecord, fn: () => void): void {
  if (record.inFlight === true) record.onSettled = fn
  else fn()
}

/** The handler is done with the figures: whoever waits for them may go on. */
export function settled (record: ChatRecord): void {
  record.inFlight = false
  record.onSettled?.()
}

// Backends that report no usage still get counted: about four characters a token for the prompt,
// one token a streamed piece for the answer.
const tokensFor = (chars: number): number => Math.max(1, Math.ceil(chars / 4))

export function estimatePromptTokens (request: ChatRequest): number {
  return tokensFor(request.messages.reduce((n, m) => n + m.content.length, 0))
}

/** Embedding inputs, by the same rule. */
export function estimateInputTokens (input: string[]): number {
  return tokensFor(input.reduce((n, text) => n + text.length, 0))
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

/**
 * A stream the client left has no usage from the backend: it is charged (and recorded) for its
 * prompt estimate and one token a piece it received. Nothing when no answer reached the client.
 */
export function partialUsage (record: ChatRecord, promptEstimate: number): void {
  if (record.usage !== undefined || record.pieces === undefined || record.pieces === 0) return
  record.usage = { promptTokens: promptEstimate, completionTokens: record.pieces }
  record.estimated = true
}
