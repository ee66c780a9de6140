import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'

// A lean stand-in for an Ollama server for load tests: native /api/chat (NDJSON) and its
// OpenAI-compatible /v1/chat/completions (SSE), answering at once with CHUNKS pieces. It keeps no
// records, so it costs the same for every target measured.

const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 20)
const MODEL = 'llama3.2:latest'

function readBody (req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => { text += d })
    req.on('end', () => resolve(text === '' ? {} : JSON.parse(text) as Record<string, unknown>))
  })
}

function ollamaChat (body: Record<string, unknown>, res: ServerResponse): void {
  const created = new Date().toISOString()
  const final = { model: body.model, created_at: created, message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop', total_duration: 1000, load_duration: 10, prompt_eval_count: 8, prompt_eval_duration: 100, eval_count: CHUNKS, eval_duration: 900 }
  if (body.stream === false) {
    const content = Array.from({ length: CHUNKS }, (_, i) => `tok${i} `).join('')
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    res.end(JSON.stringify({ ...final, message: { role: 'assistant', content } }))
    return
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  for (let i = 0; i < CHUNKS; i++) res.write(JSON.stringify({ model: body.model, created_at: created, message: { role: 'assistant', content: `tok${i} ` }, done: false }) + '\n')
  res.end(JSON.stringify(final) + '\n')
}

function openaiChat (body: Record<string, unknown>, res: ServerResponse): void {
  const created = Math.floor(Date.now() / 1000)
  const chunk = (delta: object, finish: string | null): string => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created, model: body.model, system_fingerprint: 'fp_ollama', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
  const usage = { prompt_tokens: 8, completion_tokens: CHUNKS, total_tokens: 8 + CHUNKS }
  if (body.stream !== true) {
    const content = Array.from({ length: CHUNKS }, (_, i) => `tok${i} `).join('')
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created, model: body.model, choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage }))
    return
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  for (let i = 0; i < CHUNKS; i++) res.write(chunk(i === 0 ? { role: 'assistant', content: `tok${i} ` } : { content: `tok${i} ` }, null))
  let tail = chunk({}, 'stop')
  if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true) tail += `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created, model: body.model, choices: [], usage })}\n\n`
  res.end(tail + 'data: [DONE]\n\n')
}

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    const body = req.url === '/api/tags' ? { models: [{ name: MODEL, model: MODEL, modified_at: new Date().toISOString(), size: 1, digest: 'x', details: {} }] }
      : req.url === '/api/ps' ? { models: [{ name: MODEL, model: MODEL }] }
        : req.url === '/api/version' ? { version: '0.12.0' }
          : { object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'library' }] }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
    return
  }
  void readBody(req).then((body) => {
    if (req.url === '/api/chat') ollamaChat(body, res)
    else openaiChat(body, res)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`listening ${typeof address === 'object' && address !== null ? address.port : 0}\n`)
})
