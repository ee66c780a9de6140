import type { FastifyRequest } from 'fastify'
import type { Role } from '../config/schema.js'
import type { Db } from '../store/database.js'

/** One model request (chat, generate, embeddings), as the usage table keeps it. */
export interface UsageRecord {
  /** When the request arrived, ms since the epoch. */
  ts: number
  user: string
  role: Role
  keyId?: string | undefined
  model: string
  backend?: string | undefined
  /** The route path, e.g. /v1/chat/completions. */
  endpoint: string
  promptTokens: number
  completionTokens: number
  /** The backend reported no usage: the figures are estimates. */
  estimated: boolean
  durationMs: number
  ttftMs?: number | undefined
  status: number
}

// STUB — to be replaced: buffered writes to the usage table.
export class UsageLog {
  constructor (readonly db: Db, readonly flushMs: number) {}
  record (_record: UsageRecord): void {}
  flush (): void {}
  close (): void {}
}

/** Records every request that named a model (chat, generate, embeddings), however it ended. */
export function recordUsage (usage: UsageLog): (request: FastifyRequest, status: number, durationMs: number) => void {
  return (request, status, durationMs) => {
    const chat = request.chat
    const principal = request.principal
    if (chat === undefined || principal === null) return
    usage.record({
      ts: Date.now() - durationMs,
      user: principal.sub,
      role: principal.role,
      keyId: principal.keyId,
      model: chat.model,
      backend: chat.backend,
      endpoint: request.routeOptions.url ?? request.url,
      promptTokens: chat.usage?.promptTokens ?? 0,
      completionTokens: chat.usage?.completionTokens ?? 0,
      estimated: chat.estimated === true,
      durationMs,
      ttftMs: chat.ttftMs,
      status,
    })
  }
}
