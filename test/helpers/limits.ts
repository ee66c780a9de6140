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
