// Streaming guarantees of the chat path (DESIGN.md "The chat path"): unbuffered streams with
// X-Accel-Buffering, client aborts reaching the upstream at once, failures after the first byte
// ending the stream with the client protocol's error form, and SSE keep-alive comments.
import t from 'tap'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { OLLAMA_STREAM_ERROR, OllamaEmulator, type OllamaEmulatorOptions } from './emulators/ollama.js'
import { XINFERENCE_STREAM_ERROR, XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

type Surface = 'ollama' | 'openai'
type Emulator = OllamaEmulator | XinferenceEmulator
type Test = Parameters<Parameters<typeof t.test>[1]>[0]

const LLAMA = 'llama3.2'
const QWEN = 'qwen2.5-instruct'

async function ollamaEmu (t: Test, opts: OllamaEmulatorOptions = {}): Promise<OllamaEmulator> {
  const e = await OllamaEmulator.start(opts)
  t.teardown(async () => { const s = Date.now(); await e.close(); console.error('emu close', Date.now() - s) })
  return e
}

async function xinfEmu (t: Test): Promise<XinferenceEmulator> {
  const e = await XinferenceEmulator.start()
  t.teardown(async () => { const s = Date.now(); await e.close(); console.error('emu close', Date.now() - s) })
  return e
}

/** Both backends, maxConcurrent 1 each; llama3.2 lives on Ollama, qwen2.5-instruct on Xinference. */
async function pair (t: Test, extra: Record<string, unknown> = {}): Promise<{ o: OllamaEmulator, x: XinferenceEmulator, gw: Gateway }> {
  const o = await ollamaEmu(t)
  const x = await xinfEmu(t)
  const gw = await startGateway(t, [
    { name: 'ollama-a', type: 'ollama', url: o.url, maxConcurrent: 1 },
    { name: 'xinf-b', type: 'xinference', url: x.url, maxConcurrent: 1 },
  ], { routing: { queueTimeoutMs: 5000 }, ...extra })
  return { o, x, gw }
}

const inferencePath = (e: Emulator): string => (e instanceof OllamaEmulator ? '/api/chat' : '/v1/chat/completions')
const chats = (e: Emulator): number => e.requests.filter((r) => r.path === inferencePath(e)).length

function post (gw: Gateway, surface: Surface, model: string, stream: boolean, signal?: AbortSignal): Promise<Response> {
  return fetch(surface === 'ollama' ? `${gw.url}/api/chat` : `${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...gw.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'why is the sky blue' }], stream }),
    ...(signal !== undefined && { signal }),
  })
}

/** Reads body chunks until `enough(text)`; fails if the stream ends first. */
async function readUntil (reader: ReadableStreamDefaultReader<Uint8Array>, enough: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder()
  let text = ''
  while (!enough(text)) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`stream ended after ${JSON.stringify(text)}`)
    text += decoder.decode(value, { stream: true })
  }
  return text
}

const wholeFrame = (surface: Surface) => (text: string): boolean => (surface === 'ollama' ? text.includes('\n') : /\r?\n\r?\n/.test(text))
const sseEvents = (text: string): string[] => text.split(/\r?\n\r?\n/).filter((e) => e.trim() !== '')
const sseJson = (event: string): any => JSON.parse(/^data: ?(.*)$/s.exec(event)?.[1] ?? 'null')
const sseContent = (events: string[]): string =>
  events.map((e) => (e.includes('[DONE]') ? '' : sseJson(e)?.choices?.[0]?.delta?.content ?? '')).join('')

t.test('stream headers; the first chunk reaches the client while the upstream is still open', async (t) => {
  const { o, x, gw } = await pair(t)
  // complete streams first: headers, and the clean end (done:true / [DONE])
  const nd = await post(gw, 'ollama', LLAMA, true)
  t.equal(nd.status, 200)
  t.equal(nd.headers.get('content-type'), 'application/x-ndjson')
  t.equal(nd.headers.get('x-accel-buffering'), 'no')
  const lines = (await nd.text()).split('\n')
  t.equal(lines.pop(), '', 'NDJSON ends with a newline')
  t.equal(JSON.parse(lines.at(-1)!).done, true, 'the last line is done:true')
  for (const [model, emu] of [[LLAMA, o], [QWEN, x]] as const) {
    const sse = await post(gw, 'openai', model, true)
    t.equal(sse.status, 200)
    t.match(sse.headers.get('content-type'), /^text\/event-stream/)
    t.equal(sse.headers.get('x-accel-buffering'), 'no')
    const events = sseEvents(await sse.text())
    t.equal(events.at(-1), 'data: [DONE]', `${model}: the last event is [DONE]`)
    t.equal(sseContent(events), `Hello from ${model}!`)
    t.equal(emu.inFlight, 0)
  }

  o.mode = { holdOpen: true }
  x.mode = { holdOpen: true }
  const cases: Array<[string, Surface, string, Emulator, RegExp]> = [
    ['ollama → ollama (pass-through)', 'ollama', LLAMA, o, /^\{"model":"llama3\.2:latest",.*"content":"Hello"\},"done":false\}\n$/],
    ['ollama → openai (translated)', 'openai', LLAMA, o, /^data: \{.*"delta":\{"role":"assistant","content":"Hello"\}.*\}\n\n$/],
    ['xinference → openai (pass-through)', 'openai', QWEN, x, /^data: \{.*"delta": \{"role": "assistant", "content": ""\}.*\}\r\n\r\n$/],
  ]
  for (const [name, surface, model, emu, first] of cases) {
    const abortsBefore = emu.aborts.length
    const ac = new AbortController()
    const res = await post(gw, surface, model, true, ac.signal)
    t.equal(res.status, 200, name)
    t.equal(res.headers.get('x-accel-buffering'), 'no', name)
    t.match(res.headers.get('content-type'), surface === 'ollama' ? 'application/x-ndjson' : /^text\/event-stream/, name)
    const text = await readUntil(res.body!.getReader(), wholeFrame(surface))
    t.match(text, first, `${name}: the first frame arrived alone`)
    t.equal(emu.inFlight, 1, `${name}: the upstream request is still open`)
    t.equal(emu.aborts.length, abortsBefore, `${name}: and was not cut`)
    ac.abort()
    await emu.waitForAborts(abortsBefore + 1)
    console.error('aborted', name)
  }
  const s = Date.now(); await gw.app.close(); console.error('app close', Date.now() - s)
})

