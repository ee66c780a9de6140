// Streaming guarantees of the chat path (DESIGN.md "The chat path"): unbuffered streams with
// X-Accel-Buffering, client aborts reaching the upstream at once, failures after the first byte
// ending the stream with the client protocol's error form, and SSE keep-alive comments.
import t, { type Test } from 'tap'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { Agent, fetch as undiciFetch } from 'undici'
import { OLLAMA_STREAM_ERROR, OllamaEmulator, type OllamaEmulatorOptions } from './emulators/ollama.js'
import { XINFERENCE_STREAM_ERROR, XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

type Surface = 'ollama' | 'openai'
type Emulator = OllamaEmulator | XinferenceEmulator

const LLAMA = 'llama3.2'
const QWEN = 'qwen2.5-instruct'

async function ollamaEmu (t: Test, opts: OllamaEmulatorOptions = {}): Promise<OllamaEmulator> {
  const e = await OllamaEmulator.start(opts)
  t.teardown(() => e.close())
  return e
}

async function xinfEmu (t: Test): Promise<XinferenceEmulator> {
  const e = await XinferenceEmulator.start()
  t.teardown(() => e.close())
  return e
}

/**
 * A fetch with its own connection pool, destroyed before the gateway closes (teardowns run last
 * registered first): a spare keep-alive connection would otherwise hold the gateway's close.
 */
function clientFetch (t: Test): typeof fetch {
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  return ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch
}

interface Env { o: OllamaEmulator, x: XinferenceEmulator, gw: Gateway, fetch: typeof fetch }

/** Both backends, maxConcurrent 1 each; llama3.2 lives on Ollama, qwen2.5-instruct on Xinference. */
async function pair (t: Test, extra: Record<string, unknown> = {}): Promise<Env> {
  const o = await ollamaEmu(t)
  const x = await xinfEmu(t)
  const gw = await startGateway(t, [
    { name: 'ollama-a', type: 'ollama', url: o.url, maxConcurrent: 1 },
    { name: 'xinf-b', type: 'xinference', url: x.url, maxConcurrent: 1 },
  ], { routing: { queueTimeoutMs: 5000 }, ...extra })
  return { o, x, gw, fetch: clientFetch(t) }
}

const inferencePath = (e: Emulator): string => (e instanceof OllamaEmulator ? '/api/chat' : '/v1/chat/completions')
const chats = (e: Emulator): number => e.requests.filter((r) => r.path === inferencePath(e)).length

function post ({ gw, fetch }: Env, surface: Surface, model: string, stream: boolean, signal?: AbortSignal): Promise<Response> {
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
const parse = (text: string): any => { try { return JSON.parse(text) } catch { return { unparsable: text } } }
const sseJson = (event: string): any => parse(/^data: ?(.*)$/s.exec(event)?.[1] ?? 'null')
const sseContent = (events: string[]): string =>
  events.map((e) => (e.includes('[DONE]') ? '' : sseJson(e)?.choices?.[0]?.delta?.content ?? '')).join('')

t.test('stream headers; the first chunk reaches the client while the upstream is still open', async (t) => {
  const env = await pair(t)
  const { o, x, gw } = env
  // complete streams first: headers, and the clean end (done:true / [DONE])
  for (const [surface, model] of [['ollama', LLAMA], ['ollama', QWEN], ['openai', LLAMA], ['openai', QWEN]] as const) {
    const name = `${surface} surface, ${model}`
    const res = await post(env, surface, model, true)
    t.equal(res.status, 200, name)
    t.match(res.headers.get('content-type'), surface === 'ollama' ? /^application\/x-ndjson$/ : /^text\/event-stream/, name)
    t.equal(res.headers.get('x-accel-buffering'), 'no', name)
    const text = await res.text()
    const answer = `Hello from ${model === LLAMA ? 'llama3.2:latest' : model}!`
    if (surface === 'ollama') {
      const lines = text.split('\n')
      t.equal(lines.pop(), '', `${name}: NDJSON ends with a newline`)
      t.equal(parse(lines.at(-1) ?? '').done, true, `${name}: the last line is done:true`)
      t.equal(lines.map((l) => parse(l).message?.content).join(''), answer, name)
    } else {
      const events = sseEvents(text)
      t.equal(events.at(-1), 'data: [DONE]', `${name}: the last event is [DONE]`)
      t.equal(sseContent(events), answer, name)
    }
  }
  t.same([o.inFlight, x.inFlight], [0, 0])

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
    const res = await post(env, surface, model, true, ac.signal)
    t.equal(res.status, 200, name)
    t.equal(res.headers.get('x-accel-buffering'), 'no', name)
    t.match(res.headers.get('content-type'), surface === 'ollama' ? 'application/x-ndjson' : /^text\/event-stream/, name)
    const text = await readUntil(res.body!.getReader(), wholeFrame(surface))
    t.match(text, first, `${name}: the first frame arrived alone`)
    t.equal(emu.inFlight, 1, `${name}: the upstream request is still open`)
    t.equal(emu.aborts.length, abortsBefore, `${name}: and was not cut`)
    ac.abort()
    await emu.waitForAborts(abortsBefore + 1)
  }
})

t.test('the client leaving aborts the upstream at once and frees the slot', async (t) => {
  const env = await pair(t)
  const { o, x, gw } = env
  const pool = gw.app.gateway.pool
  const combos: Array<[Surface, string, Emulator, number]> = [
    ['ollama', LLAMA, o, 0], ['openai', LLAMA, o, 0], ['openai', QWEN, x, 1],
  ]
  for (const [surface, model, emu, index] of combos) {
    for (const phase of ['before the first token', 'mid-stream', 'non-streamed'] as const) {
      const name = `${surface} surface, ${model}, ${phase}`
      const aborts = emu.aborts.length
      const sent = chats(emu)
      emu.mode = phase === 'mid-stream' ? { holdOpen: true } : { firstTokenDelayMs: 600_000 }
      const ac = new AbortController()
      const pending = post(env, surface, model, phase !== 'non-streamed', ac.signal)
      if (phase === 'mid-stream') {
        const res = await pending
        await readUntil(res.body!.getReader(), wholeFrame(surface))
      } else {
        pending.catch(() => undefined)
        await emu.waitForRequests(sent + 1, inferencePath(emu))
      }
      ac.abort()
      await emu.waitForAborts(aborts + 1)
      t.equal(emu.aborts.length, aborts + 1, `${name}: upstream aborted`)

      // maxConcurrent is 1: the next request only gets through if the slot was released
      emu.mode = {}
      const next = await post(env, surface, model, false)
      t.equal(next.status, 200, `${name}: a following request succeeds`)
      const body = await next.json() as any
      t.equal(surface === 'ollama' ? body.message.content : body.choices[0].message.content, `Hello from ${model}${model === LLAMA ? ':latest' : ''}!`)
      t.equal(pool.backends[index]!.inFlight, 0, `${name}: no slot held`)
      t.equal(pool.queueLength(model), 0)
    }
  }
  t.equal(o.maxInFlight, 1)
  t.equal(x.maxInFlight, 1)
})

interface FailureCase { surface: Surface, emu: 'o' | 'x', how: 'failAfterChunks' | 'dropAfterChunks', chunkDelayMs: number }

/** Content chunks the client received (NDJSON lines or SSE events), the last frame's error message. */
function failedStream (t: Test, surface: Surface, text: string, name: string): { content: string, message: unknown } {
  if (surface === 'ollama') {
    const lines = text.split('\n')
    t.equal(lines.pop(), '', `${name}: ends with a whole line`)
    const objects = lines.map(parse)
    const last = objects.at(-1) ?? {}
    t.same(Object.keys(last), ['error'], `${name}: the last line is {"error": …}`)
    t.equal(objects.filter((m) => m.done === true).length, 0, `${name}: no done line`)
    return { content: objects.slice(0, -1).map((m) => m.message?.content).join(''), message: last.error }
  }
  const events = sseEvents(text)
  t.notOk(text.includes('[DONE]'), `${name}: no [DONE]`)
  const last = sseJson(events.at(-1) ?? '')
  t.type(last?.error, 'object', `${name}: the last event is data: {"error":{…}}`)
  t.type(last?.error?.type, 'string', name)
  return { content: sseContent(events.slice(0, -1)), message: last?.error?.message }
}

t.test('an upstream failure after the first byte ends the stream with the error form, never silently', async (t) => {
  const cases: FailureCase[] = []
  for (const [surface, emu] of [['ollama', 'o'], ['ollama', 'x'], ['openai', 'x'], ['openai', 'o']] as const) {
    // chunkDelayMs 0: the content and the error frame tend to reach the gateway in one read
    cases.push({ surface, emu, how: 'failAfterChunks', chunkDelayMs: 0 }, { surface, emu, how: 'failAfterChunks', chunkDelayMs: 10 })
    // a dropped socket loses what undici had not handed on yet: the first chunk must have been relayed
    cases.push({ surface, emu, how: 'dropAfterChunks', chunkDelayMs: 10 })
  }
  for (const c of cases) {
    const name = `${c.surface} surface from ${c.emu === 'o' ? 'Ollama' : 'Xinference'}, ${c.how}: 2, chunkDelayMs: ${c.chunkDelayMs}`
    await t.test(name, (t) => failureCase(t, c, name))
  }
})

async function failureCase (t: Test, c: FailureCase, name: string): Promise<void> {
  const env = await pair(t)
  const { gw } = env
  const emu = c.emu === 'o' ? env.o : env.x
  const model = c.emu === 'o' ? LLAMA : QWEN
  const upstreamMessage = c.emu === 'o' ? OLLAMA_STREAM_ERROR : XINFERENCE_STREAM_ERROR
  emu.mode = { [c.how]: 2, chunkDelayMs: c.chunkDelayMs }
  const checkContent = (content: string, what: string): void => {
    if (c.how === 'failAfterChunks') t.equal(content, 'Hello from', `${name}: ${what}`)
    else t.ok(content.startsWith('Hello') && 'Hello from'.startsWith(content), `${name}: ${what} (${JSON.stringify(content)})`)
  }

  // raw bytes
  const res = await post(env, c.surface, model, true)
  t.equal(res.status, 200, name)
  const { content, message } = failedStream(t, c.surface, await res.text(), name)
  checkContent(content, 'content before the failure arrived')
  t.type(message, 'string', name)
  t.not(message, '', name)
  if (c.how === 'failAfterChunks') t.equal(message, upstreamMessage, `${name}: the upstream message is kept`)

  // a dropped connection marks the backend down; the probe brings it back for the next round
  await gw.app.gateway.pool.refresh()

  // the official clients fail loudly with that message
  let got = ''
  let error: unknown
  try {
    if (c.surface === 'ollama') {
      const ollama = new Ollama({ host: gw.url, headers: gw.auth(), fetch: env.fetch })
      for await (const part of await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }], stream: true })) got += part.message.content
    } else {
      const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token(), maxRetries: 0, fetch: env.fetch })
      for await (const chunk of await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true })) got += chunk.choices[0]?.delta?.content ?? ''
    }
  } catch (err) {
    error = err
  }
  t.type(error, c.surface === 'openai' ? OpenAI.APIError : Error, `${name}: the client throws`)
  t.equal((error as Error | undefined)?.message, message, `${name}: with the stream's error message`)
  checkContent(got, 'after the content that did arrive')
  t.equal(chats(emu), 2, `${name}: no retry after the first byte`)
  t.equal(chats(c.emu === 'o' ? env.x : env.o), 0, `${name}: nothing went to the other backend`)
}

t.test('SSE keep-alive comments while waiting for the first token; none on NDJSON', async (t) => {
  const env = await pair(t, { routing: { keepAliveMs: 10 } })
  const { o, gw } = env

  // sent while the upstream is still silent
  o.mode = { firstTokenDelayMs: 600_000 }
  const ac = new AbortController()
  const res = await post(env, 'openai', LLAMA, true, ac.signal)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(res.headers.get('x-accel-buffering'), 'no')
  const text = await readUntil(res.body!.getReader(), (s) => s.includes(': keep-alive\n\n'))
  t.match(text, /^(: keep-alive\n\n)+$/, 'only comments so far')
  t.equal(o.inFlight, 1, 'while the upstream has not answered')
  ac.abort()
  await o.waitForAborts(1)

  // the openai SDK parses a stream that starts with comments
  o.mode = { firstTokenDelayMs: 300 }
  let raw = ''
  let tapped: Promise<void> = Promise.resolve()
  const tee = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const r = await env.fetch(input, init)
    if (r.body === null) return r
    const [mine, theirs] = r.body.tee()
    tapped = (async () => {
      const decoder = new TextDecoder()
      for await (const chunk of mine) raw += decoder.decode(chunk, { stream: true })
    })()
    return new Response(theirs, { status: r.status, headers: r.headers })
  }
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.token(), maxRetries: 0, fetch: tee })
  let content = ''
  for await (const chunk of await openai.chat.completions.create({ model: LLAMA, messages: [{ role: 'user', content: 'hi' }], stream: true })) {
    content += chunk.choices[0]?.delta?.content ?? ''
  }
  await tapped
  t.equal(content, 'Hello from llama3.2:latest!')
  t.match(raw, /^: keep-alive\n\n/, 'the stream started with a keep-alive comment')
  t.equal(sseEvents(raw).at(-1), 'data: [DONE]')

  // NDJSON has no comments: every line is JSON
  const nd = await post(env, 'ollama', LLAMA, true)
  t.equal(nd.status, 200)
  const lines = (await nd.text()).split('\n').filter((l) => l !== '')
  t.equal(lines.filter((l) => !l.startsWith('{')).length, 0, 'no keep-alive lines on NDJSON')
  t.equal(JSON.parse(lines.at(-1)!).done, true)
  t.equal(lines.map((l) => JSON.parse(l).message.content).join(''), 'Hello from llama3.2:latest!')
})
