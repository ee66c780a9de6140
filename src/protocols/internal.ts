// The gateway's own chat form: what every front protocol decodes into and every backend
// protocol is encoded from, when the two differ.

export interface ToolCall {
  id?: string
  name: string
  /** Parsed arguments; Ollama sends an object, OpenAI a JSON string that we parse. */
  arguments: unknown
}

export interface ChatMessage {
  role: string
  content: string
  /** Raw base64 (no data: prefix), or an http(s) URL an OpenAI client sent. */
  images?: string[]
  thinking?: string
  toolCalls?: ToolCall[]
  toolCallId?: string
  toolName?: string
}

export interface SamplingOptions {
  temperature?: number
  top_p?: number
  top_k?: number
  seed?: number
  stop?: string[]
  max_tokens?: number
  frequency_penalty?: number
  presence_penalty?: number
}

export interface ChatRequest {
  model: string
  messages: ChatMessage[]
  stream: boolean
  /** OpenAI's stream_options.include_usage, asked by the client. */
  includeUsage: boolean
  tools?: unknown[]
  toolChoice?: unknown
  /** 'json', or a JSON schema object. */
  format?: 'json' | Record<string, unknown>
  think?: boolean | string
  keepAlive?: string | number
  options: SamplingOptions
  /** Backend-specific sampling options passed through as they came (Ollama `options`). */
  extraOptions?: Record<string, unknown>
}

export type FinishReason = 'stop' | 'length' | 'tool_calls'

export interface Usage { promptTokens: number, completionTokens: number }

/** One piece of a streamed answer, in either direction. */
export interface ChatDelta {
  content?: string
  thinking?: string
  toolCalls?: ToolCall[]
}

export interface EmbedRequest {
  model: string
  input: string[]
  dimensions?: number
}

export interface EmbedResult {
  embeddings: number[][]
  promptTokens: number
}

/** A whole (non-streamed) answer. */
export interface ChatResult {
  content: string
  thinking?: string
  toolCalls?: ToolCall[]
  finishReason: FinishReason
  usage?: Usage
}

/** What one upstream frame meant, once decoded. */
export interface StreamStep {
  delta?: ChatDelta
  /** The upstream said the answer is complete. */
  done?: boolean
  /** The upstream reported an error mid-stream. */
  error?: string
}
