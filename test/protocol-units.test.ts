// Unit tests of src/protocols/*: the branches the client-level translation tests do not reach.
import t, { type Test } from 'tap'
import { GatewayError } from '../src/errors.js'
import { LineSplitter, SseSplitter, ndjsonFrame, parseJson, sseData, sseFrame } from '../src/protocols/framing.js'
import { fromImageUrl, toBase64Image, toImageUrl } from '../src/protocols/images.js'
import type { ChatRequest } from '../src/protocols/internal.js'
import { decodeOllamaChat, decodeOllamaEmbed, decodeOllamaGenerate, encodeOllamaChat, type OllamaChatBody } from '../src/protocols/ollama/request.js'
import { OllamaStreamReader, OllamaStreamWriter, ollamaResult, ollamaStreamError, plainContentLiteral, readOllamaResult, tapOllamaUsage } from '../src/protocols/ollama/response.js'
import { decodeOpenAIChat, decodeOpenAIEmbeddings, encodeOpenAIChat, type OpenAIChatBody } from '../src/protocols/openai/request.js'
import { OpenAIStreamReader, OpenAIStreamWriter, openaiCompletion, openaiStreamError, readOpenAICompletion, upstreamErrorText } from '../src/protocols/openai/response.js'

const texts = (frames: Buffer[]): string[] => frames.map((f) => f.toString('utf8'))
const oai = (body: Record<string, unknown>): ChatRequest => decodeOpenAIChat({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body } as OpenAIChatBody)
const oll = (body: Record<string, unknown>): ChatRequest => decodeOllamaChat({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body } as OllamaChatBody)
/** `fn` throws a 400 GatewayError whose message matches. */
function refused (t: Test, fn: () => unknown, message: RegExp): void {
  let err: unknown
  try { fn() } catch (e) { err = e }
  t.ok(err instanceof GatewayError, `throws a GatewayError (${String(message)})`)
  t.match(err, { statusCode: 400, message })
}

t.test('LineSplitter: lines split across chunks, multi-byte characters, unfinished tail', async (t) => {
  const s = new LineSplitter()
  const text = Buffer.from('{"a":1}\n{"t":"é"}\n{"c"')
  const cut = text.indexOf(0xa9) // inside the two bytes of é
  t.strictSame(texts(s.push(text.subarray(0, 4))), [])
  t.strictSame(texts(s.push(text.subarray(4, cut))), ['{"a":1}\n'])
  t.strictSame(texts(s.push(text.subarray(cut))), ['{"t":"é"}\n'], 'bytes are joined before decoding')
  t.strictSame(texts(s.push(Buffer.from(':3}\r\n\n'))), ['{"c":3}\r\n', '\n'], 'CRLF stays in the frame; empty lines are frames')
  t.equal(s.rest(), undefined)
  s.push(Buffer.from('{"partial"'))
  t.equal(s.rest()?.toString(), '{"partial"')
  t.equal(s.rest(), undefined, 'rest hands the tail over once')
})

t.test('SseSplitter: LF and CRLF events, terminators split at every byte', async (t) => {
  const stream = 'data: {"a":1}\n\n: ping - 2025-01-01\r\n\r\nevent: x\ndata: 1\ndata: 2\n\ndata: [DONE]\r\n\r\n'
  const expected = ['data: {"a":1}\n\n', ': ping - 2025-01-01\r\n\r\n', 'event: x\ndata: 1\ndata: 2\n\n', 'data: [DONE]\r\n\r\n']
  for (let cut = 1; cut < stream.length; cut++) {
    const s = new SseSplitter()
    const frames = [...s.push(Buffer.from(stream.slice(0, cut))), ...s.push(Buffer.from(stream.slice(cut)))]
    if (JSON.stringify(texts(frames)) !== JSON.stringify(expected)) t.fail(`split at ${cut}: ${JSON.stringify(texts(frames))}`)
    t.equal(s.rest(), undefined)
  }
  const byByte = new SseSplitter()
  const frames: Buffer[] = []
  for (const byte of Buffer.from(stream)) frames.push(...byByte.push(Buffer.from([byte])))
  t.strictSame(texts(frames), expected, 'one byte at a time')
  const s = new SseSplitter()
  t.strictSame(texts(s.push(Buffer.from('data: x\n'))), [], 'one LF is not the end of an event')
  t.strictSame(texts(s.push(Buffer.from('\r\ndata: y\r\n\r\n'))), ['data: x\n\r\n', 'data: y\r\n\r\n'], 'LF then CRLF ends an event')
})

t.test('sseData, sseFrame, ndjsonFrame, parseJson', async (t) => {
  t.equal(sseData('data: {"a":1}\r\n\r\n'), '{"a":1}')
  t.equal(sseData(Buffer.from('data:compact\n\n')), 'compact', 'the space after the colon is optional')
  t.equal(sseData('data:  two\n\n'), ' two', 'only one leading space is dropped')
  t.equal(sseData('event: error\ndata: a\ndata: b\n\n'), 'a\nb', 'data lines join with LF')
  t.equal(sseData(': keep-alive\n\n'), undefined, 'comments carry no data')
  t.equal(sseData('\n\n'), undefined)
  t.equal(sseFrame('[DONE]'), 'data: [DONE]\n\n')
  t.equal(sseFrame({ a: 'x' }), 'data: {"a":"x"}\n\n')
  t.equal(ndjsonFrame({ done: true }), '{"done":true}\n')
  t.same(parseJson('{"a":[1]}'), { a: [1] })
  t.equal(parseJson('{"a":'), undefined)
})

t.test('images: base64 ⇄ data: URLs by signature; remote URLs kept for OpenAI backends, refused for Ollama', async (t) => {
  t.equal(toImageUrl('iVBORw0K'), 'data:image/png;base64,iVBORw0K')
  t.equal(toImageUrl('/9j/4AAQ'), 'data:image/jpeg;base64,/9j/4AAQ')
  t.equal(toImageUrl('R0lGODlh'), 'data:image/gif;base64,R0lGODlh')
  t.equal(toImageUrl('UklGRiQA'), 'data:image/webp;base64,UklGRiQA')
  t.equal(toImageUrl('AAAA'), 'data:image/jpeg;base64,AAAA', 'unknown bytes default to jpeg')
  t.equal(toImageUrl('https://example.com/cat.png'), 'https://example.com/cat.png', 'remote URLs pass on as they are')
  t.equal(fromImageUrl('data:image/png;base64,iVBORw0K'), 'iVBORw0K')
  t.equal(fromImageUrl('data:;base64,QUJD'), 'QUJD', 'no media type')
  t.equal(fromImageUrl('https://example.com/cat.png'), 'https://example.com/cat.png')
  refused(t, () => fromImageUrl('data:image/png,rawbytes'), /base64/)
  t.throws(() => fromImageUrl('file:///etc/passwd'), { code: 'invalid_image' })
  t.equal(toBase64Image('iVBORw0K'), 'iVBORw0K')
  refused(t, () => toBase64Image('https://example.com/cat.png'), /data: URL/)
})

t.test('OpenAI request decode: content parts, tool calls, tool-call id pairing, options', async (t) => {
  const r = oai({
    messages: [
      { role: 'system', content: null },
      { role: 'user', content: [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }, { type: 'image_url', image_url: 'data:image/png;base64,AAA' }, { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,BBB' } }] },
      { role: 'assistant', content: null, reasoning_content: 'hmm', tool_calls: [{ id: 'c1', function: { name: 'f', arguments: '{"x":1}' } }, { id: 'c2', function: { name: 'g', arguments: '' } }, { id: 'c3', function: { name: 'h' } }] },
      { role: 'tool', tool_call_id: 'c2', content: 'G' },
      { role: 'tool', tool_call_id: 'zz', content: 'unknown id' },
      { role: 'assistant', content: 'ok', reasoning: 'r2' },
    ],
    stop: 'END', max_tokens: 5, max_completion_tokens: 9, temperature: 0, top_k: 3, seed: 11, frequency_penalty: 0.5, presence_penalty: -0.5,
    stream: true, stream_options: { include_usage: true }, tool_choice: 'auto', reasoning: { effort: 'low' }, response_format: { type: 'json_object' },
  })
  t.strictSame(r.messages, [
    { role: 'system', content: '' },
    { role: 'user', content: 'one\ntwo', images: ['AAA', 'BBB'] },
    { role: 'assistant', content: '', thinking: 'hmm', toolCalls: [{ id: 'c1', name: 'f', arguments: { x: 1 } }, { id: 'c2', name: 'g', arguments: {} }, { id: 'c3', name: 'h', arguments: {} }] },
    { role: 'tool', content: 'G', toolCallId: 'c2', toolName: 'g' },
    { role: 'tool', content: 'unknown id', toolCallId: 'zz' },
    { role: 'assistant', content: 'ok', thinking: 'r2' },
  ])
  t.strictSame(r.options, { temperature: 0, top_p: undefined, top_k: 3, seed: 11, stop: ['END'], max_tokens: 9, frequency_penalty: 0.5, presence_penalty: -0.5 }, 'max_completion_tokens wins')
  t.match(r, { stream: true, includeUsage: true, toolChoice: 'auto', think: 'low', format: 'json' })
  t.equal(oai({ reasoning_effort: 'high' }).think, 'high')
  t.strictSame(oai({ response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object' } } } }).format, { type: 'object' })
  t.equal(oai({ response_format: { type: 'json_schema', json_schema: { name: 'n' } } }).format, undefined)
  t.equal(oai({ response_format: { type: 'text' } }).format, undefined)
  t.strictSame(oai({ stop: ['a', 'b'] }).options.stop, ['a', 'b'])
  t.equal(oai({ stop: [1] }).options.stop, undefined)
  t.match(oai({}), { stream: false, includeUsage: false })
  t.equal(oai({ stream: true }).includeUsage, false)
  refused(t, () => oai({ messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] }), /"input_audio" is not supported/)
  refused(t, () => oai({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }), /needs a url/)
  refused(t, () => oai({ messages: [{ role: 'assistant', tool_calls: [{ id: 'x', function: { arguments: '{}' } }] }] }), /name is required/)
  refused(t, () => oai({ messages: [{ role: 'assistant', tool_calls: [{ id: 'x', function: { name: 'f', arguments: '{oops' } }] }] }), /tool call "f": arguments must be a JSON string/)
})

t.test('OpenAI embeddings decode', async (t) => {
  t.strictSame(decodeOpenAIEmbeddings({ model: 'e', input: 'one' }), { model: 'e', input: ['one'] })
  t.strictSame(decodeOpenAIEmbeddings({ model: 'e', input: ['a', 'b'], dimensions: 8 }), { model: 'e', input: ['a', 'b'], dimensions: 8 })
  refused(t, () => decodeOpenAIEmbeddings({ model: 'e', input: [1, 2] }), /token-array input/)
  refused(t, () => decodeOpenAIEmbeddings({ model: 'e', input: [[1], [2]] }), /send text/)
})

t.test('OpenAI request encode: ids for Ollama tool calls, results paired by name then order, flavours', async (t) => {
  const req = oll({
    messages: [
      { role: 'user', content: 'look', images: ['iVBORabc'] },
      { role: 'assistant', content: '', thinking: 'th', tool_calls: [{ function: { name: 'f', arguments: { a: 1 } } }, { function: { name: 'g' } }, { id: 'keep', function: { name: 'f', arguments: { a: 2 } } }] },
      { role: 'tool', content: 'G', tool_name: 'g' },
      { role: 'tool', content: 'F1' },
      { role: 'tool', content: 'F2', tool_name: 'f' },
      { role: 'tool', content: 'extra', tool_name: 'nobody' },
    ],
    stream: true, think: true, format: { type: 'object' }, keep_alive: '5m',
    options: { num_predict: 7, stop: ['x'], temperature: 0.5, num_ctx: 4096 },
  })
  const body = encodeOpenAIChat(req, 'uid-1', 'xinference')
  t.strictSame(body, {
    model: 'uid-1',
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORabc' } }] },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          { id: 'call_1_0', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          { id: 'call_1_1', type: 'function', function: { name: 'g', arguments: '{}' } },
          { id: 'keep', type: 'function', function: { name: 'f', arguments: '{"a":2}' } },
        ],
      },
      { role: 'tool', content: 'G', tool_call_id: 'call_1_1' },
      { role: 'tool', content: 'F1', tool_call_id: 'call_1_0' },
      { role: 'tool', content: 'F2', tool_call_id: 'keep' },
      { role: 'tool', content: 'extra' },
    ],
    stream: true,
    stream_options: { include_usage: true },
    temperature: 0.5,
    stop: ['x'],
    max_tokens: 7,
    response_format: { type: 'json_schema', json_schema: { name: 'response', schema: { type: 'object' } } },
    chat_template_kwargs: { enable_thinking: true },
  }, 'undefined options are left out; Ollama-only options (num_ctx, keep_alive) are not sent')
  const plain = encodeOpenAIChat(oll({ stream: false, think: true, format: 'json' }), 'm', 'openai')
  t.strictSame(plain, { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: false, response_format: { type: 'json_object' } }, 'no thinking switch for plain OpenAI, no stream_options unstreamed')
  t.equal(encodeOpenAIChat(oll({ think: 'medium' }), 'm', 'openai').reasoning_effort, 'medium')
})

t.test('Ollama request decode and encode', async (t) => {
  const r = oll({
    messages: [
      { role: 'SYSTEM', content: 'sys' },
      { role: 'User', images: null },
      { role: 'user', content: 'x', images: [] },
      { role: 'assistant', content: '', thinking: '', tool_calls: [{ id: 'i1', function: { name: 'f' } }] },
      { role: 'tool', content: 'r', tool_name: 'f', tool_call_id: 'i1' },
    ],
    tools: [{ type: 'function' }], think: 'high', keep_alive: 0, format: '',
    options: { num_predict: -1, seed: 4, top_p: 0.8, mirostat: 2, num_ctx: 8192 },
  })
  t.strictSame(r.messages, [
    { role: 'system', content: 'sys' }, { role: 'user', content: '' }, { role: 'user', content: 'x' },
    { role: 'assistant', content: '', toolCalls: [{ id: 'i1', name: 'f', arguments: {} }] },
    { role: 'tool', content: 'r', toolName: 'f', toolCallId: 'i1' },
  ], 'roles lower-cased; empty images and thinking dropped')
  t.equal(r.options.max_tokens, undefined, 'num_predict -1 (unlimited) is not a limit')
  t.equal(oll({ options: { num_predict: 0 } }).options.max_tokens, undefined)
  t.strictSame(r.extraOptions, { mirostat: 2, num_ctx: 8192 })
  t.match(r, { stream: true, includeUsage: false, think: 'high', keepAlive: 0 })
  t.equal(r.format, undefined, 'format "" means none')
  t.equal(oll({ format: 'json', stream: false }).format, 'json')
  t.equal(oll({ stream: false }).stream, false)
  t.strictSame(encodeOllamaChat(r, 'm:latest'), {
    model: 'm:latest',
    messages: [
      { role: 'system', content: 'sys' }, { role: 'user', content: '' }, { role: 'user', content: 'x' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'i1', function: { name: 'f', arguments: {} } }] },
      { role: 'tool', content: 'r', tool_name: 'f', tool_call_id: 'i1' },
    ],
    stream: true, tools: [{ type: 'function' }], think: 'high', keep_alive: 0,
    options: { mirostat: 2, num_ctx: 8192, top_p: 0.8, seed: 4 },
  })
  t.strictSame(encodeOllamaChat(oai({ response_format: { type: 'json_object' } }), 'm'), { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: false, format: 'json' }, 'no options object when none are set')
  const gen = decodeOllamaGenerate({ model: 'g', prompt: 'p', system: '', images: ['AA'], stream: false })
  t.strictSame(gen.messages, [{ role: 'user', content: 'p', images: ['AA'] }], 'an empty system prompt is not a message')
  t.strictSame(decodeOllamaGenerate({ model: 'g', system: 's' }).messages, [{ role: 'system', content: 's' }, { role: 'user', content: '' }])
  t.strictSame(decodeOllamaEmbed({ model: 'e', input: 'one', dimensions: 2 }), { model: 'e', input: ['one'], dimensions: 2 })
})

t.test('OpenAIStreamWriter: role once, reasoning, tool-call indexes across deltas, finish and usage', async (t) => {
  const w = new OpenAIStreamWriter('m', true)
  t.equal(w.delta({ content: '' }), '', 'an empty delta writes nothing')
  const frames = [w.delta({ thinking: 'th' }), w.delta({ content: 'a' }), w.delta({ toolCalls: [{ name: 'f', arguments: { x: 1 } }] }), w.delta({ toolCalls: [{ id: 'k', name: 'g', arguments: '{"raw":true}' }] }), w.finish('stop', { promptTokens: 3, completionTokens: 2 })].join('')
  const data = frames.split('\n\n').filter(Boolean).map((f) => f.slice(6))
  t.equal(data.at(-1), '[DONE]')
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d))
  t.strictSame(chunks[0].choices[0].delta, { role: 'assistant', reasoning: 'th' })
  t.strictSame(chunks[1].choices[0].delta, { content: 'a' })
  t.match(chunks[2].choices[0].delta.tool_calls, [{ index: 0, id: /^call_[0-9a-f]{12}$/, type: 'function', function: { name: 'f', arguments: '{"x":1}' } }])
  t.strictSame(chunks[3].choices[0].delta.tool_calls, [{ index: 1, id: 'k', type: 'function', function: { name: 'g', arguments: '{"raw":true}' } }])
  t.strictSame(chunks[4].choices, [{ index: 0, delta: {}, finish_reason: 'tool_calls' }], 'tool calls make the finish reason tool_calls')
  t.strictSame(chunks[5], { id: chunks[0].id, object: 'chat.completion.chunk', created: chunks[0].created, model: 'm', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })
  t.equal(new Set(chunks.map((c) => c.id)).size, 1)
  const empty = new OpenAIStreamWriter('m', false).finish('length', { promptTokens: 1, completionTokens: 0 })
  const only = JSON.parse(empty.split('\n\n')[0]!.slice(6))
  t.strictSame(only.choices, [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: 'length' }], 'an answer with no delta still carries the role')
  t.ok(empty.endsWith('}\n\ndata: [DONE]\n\n'), 'no usage chunk when not asked')
  t.equal(openaiStreamError(404, 'gone'), 'data: {"error":{"message":"gone","type":"not_found_error","param":null,"code":"not_found"}}\n\n')
})

t.test('plain answer-text lines of an Ollama stream become OpenAI chunks unparsed, and the same chunks as parsed ones', async (t) => {
  const line = (content: string, extra = ''): string => `{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":${content}${extra}},"done":false}`
  // Go's encoder writes <, > and & as \u escapes; JSON's other escapes and any UTF-8 text are taken.
  for (const literal of ['"The"', '"a\\"b\\u003c\\n\\t\\\\ \\/ é 😀"', '""']) {
    t.equal(plainContentLiteral(line(literal)), literal)
    t.equal(plainContentLiteral(`${line(literal)}\n`), literal, 'with the newline that ends it')
    t.equal(plainContentLiteral(`${line(literal)}\r\n`), literal)
  }
  const other = [
    line('"a\\xb"'), // not a JSON escape
    line('"a\tb"'), // a raw control character
    line('"a"', ',"thinking":"hm"'),
    line('"a"', ',"tool_calls":[]'),
    line('"a"').replace('"done":false', '"done":true'),
    '{"model":"m","created_at":"x","response":"a","done":false}',
    line('"a"') + ' ',
  ]
  for (const l of other) t.equal(plainContentLiteral(l), undefined, `parsed instead: ${l}`)
  const fast = new OpenAIStreamWriter('m', false)
  const parsed = new OpenAIStreamWriter('m', false)
  const id = (w: OpenAIStreamWriter): string => JSON.parse(w.finish('stop', { promptTokens: 0, completionTokens: 0 }).split('\n\n')[0]!.slice(6)).id as string
  const rename = (frames: string, from: OpenAIStreamWriter, to: OpenAIStreamWriter): string => frames.replaceAll(id(from), id(to))
  const texts = ['"Hel"', '""', '"lo \\"you\\""']
  const viaLiterals = texts.map((l) => fast.contentLiteral(l)).join('')
  const viaParse = texts.map((l) => parsed.delta({ content: JSON.parse(l) as string })).join('')
  t.equal(rename(viaLiterals, fast, parsed), viaParse, 'byte for byte, role on the first chunk only, nothing for empty text')
})

t.test('OpenAIStreamReader: errors, usage, reasoning, tool-call pieces assembled at the finish', async (t) => {
  const r = new OpenAIStreamReader()
  t.strictSame(r.read('[DONE]'), { done: true })
  t.strictSame(r.read('{nope'), { error: 'backend sent malformed stream data' })
  t.strictSame(r.read('{"error":"429: Rate limit"}'), { error: '429: Rate limit' })
  t.strictSame(r.read('{"error":{"message":"boom","type":"x"}}'), { error: 'boom' })
  t.strictSame(r.read('{"error":null,"choices":[{"index":0,"delta":{"content":"A"},"finish_reason":null}],"usage":null}'), { delta: { content: 'A' } })
  t.strictSame(r.read('{"choices":[{"delta":{"content":null,"reasoning_content":"R"}}]}'), { delta: { thinking: 'R' } })
  t.strictSame(r.read('{"choices":[{"delta":{"reasoning":"S"}}]}'), { delta: { thinking: 'S' } })
  const piece = (index: number, fn: object, id?: string): string => JSON.stringify({ choices: [{ delta: { tool_calls: [{ index, ...(id && { id }), function: fn }] }, finish_reason: null }] })
  t.strictSame(r.read(piece(0, { name: 'get_', arguments: '' }, 'c0')), {}, 'tool-call pieces are held back')
  t.strictSame(r.read(piece(1, { name: 'other', arguments: '{"b"' }, 'c1')), {})
  t.strictSame(r.read(piece(0, { name: 'weather', arguments: '{"city":' })), {})
  t.strictSame(r.read(piece(0, { arguments: '"Tokyo"}' })), {})
  t.strictSame(r.read(piece(1, { arguments: ':' })), {})
  t.strictSame(r.read('{"choices":[{"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}'), {
    delta: { toolCalls: [{ id: 'c0', name: 'get_weather', arguments: { city: 'Tokyo' } }, { id: 'c1', name: 'other', arguments: '{"b":' }] },
  }, 'whole calls at the finish; unparsable arguments are handed on as text')
  t.equal(r.finishReason, 'tool_calls')
  t.strictSame(r.usage, { promptTokens: 4, completionTokens: 2 })
  t.strictSame(r.read('{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}'), {})
  t.strictSame(r.usage, { promptTokens: 9, completionTokens: 8 }, 'a later usage chunk wins')
  const other = new OpenAIStreamReader()
  other.read('{"choices":[{"delta":{},"finish_reason":"length"}]}')
  t.equal(other.finishReason, 'length')
  other.read('{"choices":[{"delta":{},"finish_reason":"content_filter"}]}')
  t.equal(other.finishReason, 'stop')
  t.equal(upstreamErrorText('s'), 's')
  t.equal(upstreamErrorText({ code: 1 }), '{"code":1}')
})

t.test('OpenAI whole answers: read from a backend, written for a client', async (t) => {
  t.strictSame(readOpenAICompletion({ choices: [{ message: { content: null, reasoning_content: 'R', tool_calls: [{ id: 'c', function: { name: 'f', arguments: '{"a": 1}' } }] }, finish_reason: 'tool_calls' }], usage: { prompt_tokens: 2, completion_tokens: 1 } }), {
    content: '', thinking: 'R', toolCalls: [{ id: 'c', name: 'f', arguments: { a: 1 } }], finishReason: 'tool_calls', usage: { promptTokens: 2, completionTokens: 1 },
  })
  t.strictSame(readOpenAICompletion({ choices: [{ message: { content: 'x', reasoning: '' }, finish_reason: 'length' }], usage: -1 }), { content: 'x', finishReason: 'length' }, 'usage -1 (old Xinference) is no usage')
  t.strictSame(readOpenAICompletion({}), { content: '', finishReason: 'stop' })
  const out = openaiCompletion('m', { content: 'c', thinking: 'th', toolCalls: [{ id: 'k', name: 'f', arguments: { a: 1 } }], finishReason: 'tool_calls' }) as any
  t.strictSame(out.choices, [{ index: 0, message: { role: 'assistant', content: 'c', reasoning: 'th', tool_calls: [{ index: 0, id: 'k', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] }, finish_reason: 'tool_calls' }])
  t.strictSame(out.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 })
  t.match(out, { object: 'chat.completion', model: 'm', id: /^chatcmpl-[0-9a-f]{24}$/, created: Number })
})

t.test('OllamaStreamWriter and ollamaResult: chat and generate forms, object arguments, final counts', async (t) => {
  const started = Date.now() - 50
  const w = new OllamaStreamWriter('m', 'chat', started)
  const lines = [w.delta({ thinking: 'th' }), w.delta({ toolCalls: [{ id: 'c', name: 'f', arguments: '{"a":1}' }, { name: 'g', arguments: 'not json' }] }), w.finish('tool_calls', { promptTokens: 3, completionTokens: 0 })]
  t.ok(lines.every((l) => l.endsWith('}\n') && l.indexOf('\n') === l.length - 1), 'one JSON object per line')
  const [a, b, c] = lines.map((l) => JSON.parse(l))
  t.match(a, { model: 'm', created_at: /^\d{4}-\d\d-\d\dT.*Z$/, message: { role: 'assistant', content: '', thinking: 'th' }, done: false })
  t.strictSame(b.message.tool_calls, [{ id: 'c', function: { index: 0, name: 'f', arguments: { a: 1 } } }, { function: { index: 1, name: 'g', arguments: {} } }], 'string arguments become objects')
  t.match(c, { message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop', load_duration: 0, prompt_eval_count: 3, eval_count: 0 })
  t.ok(c.total_duration >= 50_000_000 && Number.isInteger(c.total_duration), 'durations in nanoseconds')
  t.equal(c.total_duration, c.prompt_eval_duration + c.eval_duration)
  const g = new OllamaStreamWriter('m', 'generate', Date.now())
  t.strictSame(Object.keys(JSON.parse(g.delta({ content: 'x', thinking: 't' }))), ['model', 'created_at', 'response', 'thinking', 'done'])
  t.match(JSON.parse(g.finish('length', { promptTokens: 1, completionTokens: 2 })), { response: '', done: true, done_reason: 'length', eval_count: 2 })
  t.match(ollamaResult('m', 'generate', { content: 'all', finishReason: 'stop' }, { promptTokens: 1, completionTokens: 1 }, { startedAt: Date.now() }), { response: 'all', done: true, done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 })
  t.equal(ollamaStreamError('bad'), '{"error":"bad"}\n')
})

t.test('OllamaStreamReader and readOllamaResult', async (t) => {
  const r = new OllamaStreamReader()
  t.strictSame(r.read('{"model":"m"'), { error: 'backend sent a malformed stream line' })
  t.strictSame(r.read('{"error":"an error was encountered while running the model"}\n'), { error: 'an error was encountered while running the model' })
  t.strictSame(r.read('{"error":{"code":1}}'), { error: '{"code":1}' })
  t.strictSame(r.read('{"response":"gen","thinking":"t","done":false}'), { delta: { content: 'gen', thinking: 't' } }, 'generate chunks')
  t.strictSame(r.read('{"message":{"content":"","tool_calls":[{"id":"c","function":{"name":"f","arguments":{"a":1}}},{"function":{"name":"g"}}]},"done":false}'), {
    delta: { toolCalls: [{ id: 'c', name: 'f', arguments: { a: 1 } }, { name: 'g', arguments: {} }] },
  })
  t.strictSame(r.read('{"message":{"content":"!"},"done":true,"done_reason":"length","prompt_eval_count":5,"eval_count":2}\r\n'), { delta: { content: '!' }, done: true })
  t.equal(r.finishReason, 'length')
  t.strictSame(r.usage, { promptTokens: 5, completionTokens: 2 })
  const bare = new OllamaStreamReader()
  t.strictSame(bare.read('{"done":true,"done_reason":"load"}'), { done: true })
  t.equal(bare.usage, undefined, 'no counts, no usage')
  t.strictSame(readOllamaResult({ message: { content: '', tool_calls: [{ function: { name: 'f', arguments: { a: 1 } } }] }, done_reason: 'stop', eval_count: 1 }), {
    content: '', toolCalls: [{ name: 'f', arguments: { a: 1 } }], finishReason: 'tool_calls', usage: { promptTokens: 0, completionTokens: 1 },
  })
  t.strictSame(readOllamaResult({ response: 'g', thinking: 'th', done_reason: 'length' }), { content: 'g', thinking: 'th', finishReason: 'length' })
})

t.test('tapOllamaUsage: counts off the tail of a compact answer, undefined whenever it cannot be sure', async (t) => {
  const answer = (content: string, tail = ',"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":298,"eval_duration":2}'): string =>
    `{"model":"llama3.2:latest","created_at":"2026-11-27T00:00:00Z","message":{"role":"assistant","content":${JSON.stringify(content)}},"done_reason":"stop","done":true,"total_duration":5${tail}`
  t.same(tapOllamaUsage(answer('Hello')), { promptTokens: 26, completionTokens: 298 })
  t.same(tapOllamaUsage(answer('a quoted ,"done":true,"eval_count":1 inside')), { promptTokens: 26, completionTokens: 298 }, 'text in the answer is not a key')
  t.same(tapOllamaUsage(answer('x') + '\n'), { promptTokens: 26, completionTokens: 298 }, 'a trailing newline is fine')
  t.equal(tapOllamaUsage(answer('x', '}')), undefined, 'no counts')
  t.equal(tapOllamaUsage(answer('x', ',"prompt_eval_count":26,"eval_count":-1}')), undefined, 'a negative count')
  t.equal(tapOllamaUsage(answer('x', ',"prompt_eval_count":26,"eval_count":3')), undefined, 'cut off before the closing brace')
  t.equal(tapOllamaUsage('{"model": "m", "done": true, "prompt_eval_count": 1, "eval_count": 2}'), undefined, 'spaced JSON is parsed instead')
  t.equal(tapOllamaUsage('{"error":"boom"}'), undefined)
})
