import { Type } from '@sinclair/typebox'

// The BioChatter Next server API that ChatGate answers itself (chats go to the pool).
export const BioChatterSchema = Type.Object({
  enabled: Type.Boolean({ default: true, description: 'Answer the BioChatter Next server API under prefix' }),
  prefix: Type.String({
    pattern: '^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$',
    default: '/biochatter',
    description: "Where the API is mounted: the Next frontend's BASE_URL is https://<host><prefix>",
  }),
  upstream: Type.Optional(Type.String({
    pattern: '^https?://[^\\s/]+',
    description: 'A biochatter-server for the RAG and KG routes (documents, connection status); without it they answer disconnected',
  })),
  ragAuth: Type.Union([Type.Literal('bearer'), Type.Literal('none')], {
    default: 'bearer',
    description: "The document routes (add, list, delete) need a ChatGate key or token (bearer), or take anyone's request (none: the Next server sends the browser's usually empty Authorization there)",
  }),
  upstreamTimeoutMs: Type.Integer({ minimum: 1, default: 600_000, description: 'Longest wait for the RAG/KG upstream (uploads are embedded there)' }),
}, { additionalProperties: false, default: {}, description: 'The BioChatter Next server API' })
