import { Type, type Static } from '@sinclair/typebox'
import type { ChatRequest } from '../internal.js'

// The chat body the BioChatter Next frontend sends (app/client/platforms/openai.ts), as the
// official biochatter-server reads it: `request.json()` with defaults, unknown fields ignored.
// `stream` is ignored there too: the frontend reads the answer as one JSON object.

const Num = Type.Optional(Type.Number())
const Flag = Type.Optional(Type.Union([Type.Boolean(), Type.Null()]))
const Config = Type.Optional(Type.Union([Type.Object({}), Type.Null()]))

export const NextChatBody = Type.Object({
  session_id: Type.Optional(Type.String({ maxLength: 200 })),
  messages: Type.Array(Type.Object({ role: Type.String({ minLength: 1 }), content: Type.String() }), { minItems: 1 }),
  model: Type.Optional(Type.String({ minLength: 1 })),
  temperature: Num,
  presence_penalty: Num,
  frequency_penalty: Num,
  top_p: Num,
  stream: Flag,
  useRAG: Flag,
  useKG: Flag,
  useAutoAgent: Flag,
  ragConfig: Config,
  kgConfig: Config,
  oncokbConfig: Config,
})
export type NextChatBody = Static<typeof NextChatBody>

/** The official server's default model when the body names none. */
export const DEFAULT_MODEL = 'gpt-3.5-turbo'

export function decodeNextChat (body: NextChatBody): ChatRequest {
  return {
    model: body.model ?? DEFAULT_MODEL,
    messages: body.messages.map((m) => ({ role: m.role, content: m.content })),
    stream: false,
    includeUsage: false,
    options: {
      temperature: body.temperature,
      top_p: body.top_p,
      frequency_penalty: body.frequency_penalty,
      presence_penalty: body.presence_penalty,
    },
  }
}

/** Body of /v1/tokenusage (TokenUsagePostModel): both fields optional. */
export const TokenUsageBody = Type.Union([Type.Null(), Type.Object({
  model: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  session_id: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
})])
export type TokenUsageBody = Static<typeof TokenUsageBody>
