import type { GatewayError } from '../../errors.js'
import type { ChatResult, Usage } from '../internal.js'

// Answers in the shape biochatter-server gives the Next frontend: always HTTP 200, success or
// failure told by `code` (src/constants.py there).

export const CODE_OK = 0
export const CODE_UNKNOWN = 5100
export const CODE_TOKEN_LIMIT = 5103

/** `{choices, usage, contexts, code: 0}`; ChatGate adds no RAG/KG context to chats. */
export function nextCompletion (result: ChatResult, usage: Usage): object {
  return {
    choices: [{ index: 0, message: { role: 'assistant', content: result.content }, finish_reason: result.finishReason }],
    usage: { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens, total_tokens: usage.promptTokens + usage.completionTokens },
    contexts: [],
    code: CODE_OK,
  }
}

/**
 * A refusal as the frontend shows it: a spent token quota as 5103 with its limit (the frontend
 * words it), anything else as 5100 with ChatGate's message.
 */
export function nextError (err: GatewayError): object {
  if (err.quotaLimit !== undefined) return { code: CODE_TOKEN_LIMIT, limitation: err.quotaLimit }
  return { error: err.message, code: CODE_UNKNOWN }
}
