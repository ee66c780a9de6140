import type { Gateway } from './gateway.js'

// Small callers shared by the limit tests: one chat as fetch sends it, and waiting on a condition.

export interface Answer { status: number, headers: Headers, text: string, json: () => any }

export async function chat (gw: Gateway, headers: Record<string, string>, opts: { path?: string, stream?: boolean, maxTokens?: number, signal?: AbortSignal } = {}): Promise<Answer> {
  const path = opts.path ?? '/v1/chat/completions'
  const ollama = path.startsWith('/api/')
  const body: Record<string, unknown> = { model: 'llama3.2', stream: opts.stream ?? false, messages: [{ role: 'user', content: 'hi' }] }
  if (opts.maxTokens !== undefined) {
    if (ollama) body.options = { num_predict: opts.maxTokens }
    else body.max_tokens = opts.maxTokens
  }
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: opts.signal })
  const text = await res.text()
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
}

/** Resolves once `done()` holds, checking after every turn of the event loop's timers. */
export async function until (done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 5))
}

/** A gate the emulators' answers wait behind until the test opens it. */
export function gate (): { promise: Promise<void>, open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => { open = resolve })
  return { promise, open }
}

/**
 * 100 streamed chats at once (half OpenAI, half Ollama clients; spread over the gateways given),
 * held at the backend until every one is either refused or waiting there, then let go.
 */
export async function hundredStreams (gateways: Gateway[], backend: { mode: { gate?: Promise<void> }, requests: Array<{ path: string }> }, headers: Record<string, string>): Promise<{ refusedWhileHeld: number, answers: Answer[] }> {
  const held = gate()
  backend.mode = { gate: held.promise }
  let refused = 0
  const calls = Array.from({ length: 100 }, (_, i) => chat(gateways[i % gateways.length]!, headers, {
    stream: true, maxTokens: 9, path: Math.floor(i / gateways.length) % 2 === 0 ? '/v1/chat/completions' : '/api/chat',
  }).then((answer) => {
    if (answer.status === 429) refused++
    return answer
  }))
  // The gateway sends every chat upstream as Ollama's /api/chat.
  await until(() => refused + backend.requests.filter((r) => r.path === '/api/chat').length === 100)
  const refusedWhileHeld = refused
  held.open()
  const answers = await Promise.all(calls)
  backend.mode = {}
  return { refusedWhileHeld, answers }
}
