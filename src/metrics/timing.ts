// The gateway's own overhead on every response, as a Server-Timing header (browsers' developer
// tools show it; curl -i prints it): `gateway` is the time ChatGate spent on the request until the
// response headers, without the time a backend or web app took (`upstream`, `app`) or a chat
// waited for a free backend slot (`queue`), all in milliseconds.

export interface UpstreamTime { label: 'upstream' | 'app', ms: number }

export function serverTiming (receivedAt: number, upstream?: UpstreamTime, queuedMs = 0): string {
  const total = performance.now() - receivedAt
  const own = Math.max(0, total - (upstream?.ms ?? 0) - queuedMs)
  let value = `gateway;dur=${own.toFixed(2)}`
  if (upstream !== undefined) value += `, ${upstream.label};dur=${upstream.ms.toFixed(1)}`
  if (queuedMs > 0) value += `, queue;dur=${queuedMs.toFixed(1)}`
  return value
}
