// Every line of the README's "Pointing your tools at ChatGate" block, run against a real gateway:
// the line's URL and key (the README's https://chat.example.org and cg_xxx replaced by this
// gateway and a real key of alice's) go to the client itself where it runs here (the ollama and
// openai npm clients, curl), else to a script sending exactly what that client sends with its own
// HTTP stack (test/clients/*.py on Debian's Python: requests, httpx, aiohttp), else (the Go CLI) to
// the CLI's requests replayed with Node. A line no check knows fails the test.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { promisify } from 'node:util'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { startGateway, type Gateway } from './helpers/gateway.js'
import { sendChunked } from './helpers/proxy-client.js'

const run = promisify(execFile)
const PYTHON = process.env.DEBIAN_PYTHON ?? '/usr/bin/python3'

/** The README's block, one entry per line that is not a comment. */
function readmeLines (): string[] {
  const readme = readFileSync('README.md', 'utf8')
  const block = readme.slice(readme.indexOf('<!-- tools:begin -->'), readme.indexOf('<!-- tools:end -->'))
  return block.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('```') && !l.startsWith('<!--'))
}

/** Runs a client script; its one JSON line, or the error it reported. */
async function python (script: string, args: string[], env: Record<string, string> = {}): Promise<any> {
  try {
    const { stdout } = await run(PYTHON, [`test/clients/${script}`, ...args], { env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: '1', ...env }, timeout: 60_000 })
    return JSON.parse(stdout.trim().split('\n').pop()!)
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string, stderr?: string }
    if (stdout !== undefined && stdout.trim() !== '') return JSON.parse(stdout.trim().split('\n').pop()!)
    throw new Error(`${script} failed: ${stderr ?? String(err)}`)
  }
}

/** A request as Go's net/http sends it for the Ollama CLI (its User-Agent, Host with the port). */
function goRequest (url: string, method: string, body?: unknown): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'user-agent': 'ollama/0.12.3 (amd64 linux) Go/go1.24.4', accept: body === undefined ? 'application/json' : 'application/x-ndjson' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const req = httpRequest(url, { method, headers }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += String(c) })
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

interface Context { gw: Gateway, key: string, adminKey: string, x: XinferenceEmulator }

type Check = (t: Test, line: string, c: Context) => Promise<void>

const CHECKS: Array<[RegExp, Check]> = [
  [/^OLLAMA_HOST=(\S+) ollama run (\S+)$/, async (t, line) => {
    const [, host, model] = /^OLLAMA_HOST=(\S+) ollama run (\S+)$/.exec(line)!
    // api/client.go: HEAD / (JoinPath keeps the slash), POST /api/show, /api/generate to load, /api/chat per turn.
    t.equal((await goRequest(`${host}/`, 'HEAD')).status, 200, 'heartbeat')
    t.equal((await goRequest(`${host}/api/show`, 'POST', { model })).status, 200, 'show')
    t.equal((await goRequest(`${host}/api/generate`, 'POST', { model })).status, 200, 'load')
    const chat = await goRequest(`${host}/api/chat`, 'POST', { model, messages: [{ role: 'user', content: 'Hi!' }], stream: true })
    t.equal(chat.status, 200)
    t.match(JSON.parse(chat.text.trim().split('\n').pop()!), { done: true }, 'the chat streams to its last NDJSON line')
  }],
  [/^new Ollama\((.*)\)$/, async (t, line) => {
    const options = new Function(`return ${/^new Ollama\((.*)\)$/.exec(line)![1]}`)() as ConstructorParameters<typeof Ollama>[0]
    const ollama = new Ollama(options)
    t.ok((await ollama.list()).models.length > 0)
    t.match(await ollama.chat({ model: 'llama3.1', messages: [{ role: 'user', content: 'Hi!' }] }), { done: true })
  }],
  [/^OLLAMA_HOST=(\S+) OLLAMA_API_KEY=(\S+) python3 app.py$/, async (t, line) => {
    const [, host, key] = /^OLLAMA_HOST=(\S+) OLLAMA_API_KEY=(\S+) /.exec(line)!
    const out = await python('ollama_python.py', ['llama3.1'], { OLLAMA_HOST: host!, OLLAMA_API_KEY: key! })
    t.ok(out.models.includes('llama3.1:latest'), 'list')
    t.type(out.content, 'string')
  }],
  [/^new OpenAI\((.*)\)$/, async (t, line) => {
    const options = new Function(`return ${/^new OpenAI\((.*)\)$/.exec(line)![1]}`)() as ConstructorParameters<typeof OpenAI>[0]
    const completion = await new OpenAI(options).chat.completions.create({ model: 'llama3.1', messages: [{ role: 'user', content: 'Hi!' }] })
    t.ok(completion.choices[0]?.message.content)
  }],
  [/^OPENAI_BASE_URL=(\S+) OPENAI_API_KEY=(\S+) python3 app.py$/, async (t, line) => {
    const [, base, key] = /^OPENAI_BASE_URL=(\S+) OPENAI_API_KEY=(\S+) /.exec(line)!
    t.match(await python('openai_python.py', [base!, key!, 'llama3.1']), { content: String, usage: { total_tokens: Number } })
  }],
  [/^OllamaConversation\(base_url='([^']+)'.*model_name='([^']+)'\)$/, async (t, line) => {
    const [, base, model] = /base_url='([^']+)'.*model_name='([^']+)'/.exec(line)!
    t.match(await python('biochatter_ollama.py', [base!, model!]), { content: String, done: true })
  }],
  [/^docker run -e OLLAMA_MODEL=(\S+) -e OLLAMA_URL=(\S+) /, async (t, line) => {
    // BioChatter Light chats through BioChatter's OllamaConversation with base_url=OLLAMA_URL.
    const [, model, base] = /OLLAMA_MODEL=(\S+) -e OLLAMA_URL=(\S+)/.exec(line)!
    t.match(await python('biochatter_ollama.py', [base!, model!]), { content: String, done: true })
  }],
  [/^BASE_URL=(\S+) OPENAI_API_KEY=(\S+)$/, async (t, line) => {
    const [, base, key] = /^BASE_URL=(\S+) OPENAI_API_KEY=(\S+)$/.exec(line)!
    // The Next server's fetch: chunked, ?path= query, "stream": true, Bearer <OPENAI_API_KEY>.
    const body = { session_id: 's-1', messages: [{ role: 'user', content: 'Hi!' }], model: 'llama3.1', stream: true, useRAG: false, useKG: false }
    const url = new URL(`${base}/v1/chat/completions?path=v1&path=chat&path=completions`)
    const res = await sendChunked(url.origin, url.pathname + url.search, [Buffer.from(JSON.stringify(body))], { 'content-type': 'application/json', authorization: `Bearer ${key}` })
    t.match(JSON.parse(res.text), { code: 0, choices: [{ message: { role: 'assistant' } }] })
  }],
  [/^RESTfulClient\('([^']+)', api_key='([^']+)'\)$/, async (t, line, c) => {
    const [, base, key] = /^RESTfulClient\('([^']+)', api_key='([^']+)'\)$/.exec(line)!
    const listed = await python('xinference_client.py', [base!, '--api-key', key!, 'list'])
    t.equal(listed.sent_authorization, true, 'the key is sent: /v1/cluster/auth said auth')
    t.ok('qwen2.5-instruct' in listed.models, 'list_models')
    t.match(await python('xinference_client.py', [base!, '--api-key', key!, 'chat', 'qwen2.5-instruct', 'Hi!']), { choices: [{ message: { role: 'assistant' } }] }, 'get_model(uid).chat')
    t.match(await python('xinference_client.py', [base!, '--api-key', key!, 'launch', 'llama-3.1-instruct', 'llama.cpp']), { error: { status: 403 } }, 'a user cannot launch')
    const admin = [base!, '--api-key', c.adminKey]
    t.match(await python('xinference_client.py', [...admin, 'launch', 'llama-3.1-instruct', 'llama.cpp', '--uid', 'course-llama']), { model_uid: 'course-llama' }, 'an admin launches')
    t.match(await python('xinference_client.py', [base!, '--api-key', key!, 'chat', 'course-llama', 'Hi!']), { choices: [{ message: { role: 'assistant' } }] }, 'routable at once')
    t.match(await python('xinference_client.py', [...admin, 'terminate', 'course-llama']), { terminated: 'course-llama' })
    t.notOk(c.x.models.some((m) => m.uid === 'course-llama'), 'terminated at Xinference')
  }],
  [/^OLLAMA_BASE_URLS=(\S+)$/, async (t, line) => {
    const [, base] = /^OLLAMA_BASE_URLS=(\S+)$/.exec(line)!
    const out = await python('open_webui.py', [base!, 'llama3.1'])
    t.ok(out.models.includes('llama3.1:latest'))
    t.type(out.content, 'string')
  }],
  [/^ChatOllama\(model='([^']+)', base_url='([^']+)'\)$/, async (t, line) => {
    const [, model, base] = /^ChatOllama\(model='([^']+)', base_url='([^']+)'\)$/.exec(line)!
    t.match(await python('langchain_ollama.py', [base!, model!]), { content: String })
  }],
  [/^ChatOpenAI\(model='([^']+)', base_url='([^']+)', api_key='([^']+)'\)$/, async (t, line) => {
    const [, model, base, key] = /^ChatOpenAI\(model='([^']+)', base_url='([^']+)', api_key='([^']+)'\)$/.exec(line)!
    t.match(await python('openai_python.py', [base!, key!, model!]), { content: String })
  }],
  [/^curl -u (\S+) (\S+)$/, async (t, line) => {
    const [, credentials, url] = /^curl -u (\S+) (\S+)$/.exec(line)!
    const { stdout } = await run('curl', ['-sS', '--fail-with-body', '-u', credentials!, url!])
    t.ok(JSON.parse(stdout).models.length > 0)
  }],
]

t.test('every line of "Pointing your tools at ChatGate" works against a gateway', async (t) => {
  const o = await OllamaEmulator.start({ models: ['llama3.1:latest'] })
  const x = await XinferenceEmulator.start()
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [{ name: 'ollama', type: 'ollama', url: o.url }, { name: 'xinference', type: 'xinference', url: x.url }], { auth: { pathKeys: true } })
  const keys = gw.app.gateway.keys
  const key = keys.create({ owner: 'alice', role: 'user', createdBy: 'root' }).key
  const adminKey = keys.create({ owner: 'root', role: 'admin', createdBy: 'root' }).key
  const context: Context = { gw, key, adminKey, x }
  const lines = readmeLines()
  t.ok(lines.length >= 13, 'the block has a line per tool')
  for (const line of lines) {
    const found = CHECKS.find(([pattern]) => pattern.test(line))
    if (found === undefined) {
      t.fail(`no check for README line: ${line}`)
      continue
    }
    // https://[alice:cg_xxx@]chat.example.org → http://[alice:<key>@]127.0.0.1:<port>
    const gateway = new URL(gw.url)
    const concrete = line.replace(/https:\/\/([^@\s'"]+@)?chat\.example\.org/g, (_m, credentials: string | undefined) =>
      `${gateway.protocol}//${credentials ?? ''}${gateway.host}`).replaceAll('cg_xxx', key)
    await t.test(line, (t) => found[1](t, concrete, context))
  }
  t.equal(new Set(lines.map((l) => CHECKS.findIndex(([p]) => p.test(l)))).size, CHECKS.length, 'every check has its README line')
  // Nothing a client sent reached a backend with its credentials.
  t.ok([...o.requests, ...x.requests].every((r) => r.headers.authorization === undefined), 'credentials stay with ChatGate')
})
