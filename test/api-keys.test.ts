// API keys in the embedded SQLite store: created by admins or by users for themselves, shown once,
// stored hashed, accepted as Bearer and as x-api-key by the official clients, narrowed to models,
// revoked or expired from the next request on, kept across restarts.
import t, { type Test } from 'tap'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { OllamaEmulator } from './emulators/ollama.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

async function setup (t: Test, dir = mkdtempSync(join(tmpdir(), 'chatgate-keys-'))): Promise<{ gw: Gateway, o: OllamaEmulator, dir: string }> {
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest', 'qwen3:8b'] })
  t.teardown(() => o.close())
  const gw = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { store: { dir } })
  // Admin-made keys need a known owner: the users the tests give keys to, in the store.
  await Promise.all(['alice', 'bob', 'carol', 'dave'].map((name) => gw.app.gateway.users.add({ name, password: `${name}-password` })))
  return { gw, o, dir }
}

async function call (gw: Gateway, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(`${gw.url}${path}`, { method, headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: res.status, json: await res.json() }
}

const chat = { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'hi' }] }

t.test('an admin creates a key; the official clients use it as Bearer, curl-style callers as x-api-key', async (t) => {
  const { gw, dir } = await setup(t)
  const made = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'alice', role: 'user', name: 'notebook', ttl: '30d' })
  t.equal(made.status, 201)
  t.match(made.json, { key: /^cg_[A-Za-z0-9_-]{43}$/, owner: 'alice', role: 'user', name: 'notebook', createdBy: 'root', expiresAt: String })
  const key = made.json.key as string
  t.equal(made.json.prefix, key.slice(0, 10))

  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
  const res = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(res.choices[0]!.message.content, 'Hello from llama3.2:latest!')
  const ollama = new Ollama({ host: gw.url, headers: { authorization: `Bearer ${key}` } })
  t.equal((await ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })).message.content, 'Hello from llama3.2:latest!')
  t.equal((await call(gw, 'POST', '/api/chat', { 'x-api-key': key }, chat)).status, 200, 'x-api-key')

  const listed = await call(gw, 'GET', '/admin/keys?owner=alice', gw.auth('admin'))
  t.equal(listed.json.keys.length, 1)
  t.notOk('key' in listed.json.keys[0], 'a list never shows the key')
  // Only a hash is stored: the key's text is nowhere in the database files.
  for (const file of ['chatgate.db', 'chatgate.db-wal']) {
    if (existsSync(join(dir, file))) t.notOk(readFileSync(join(dir, file)).includes(key.slice(3)), `${file} holds no key`)
  }
})

t.test('revocation and expiry hold from the next request; a key survives a restart', async (t) => {
  const { gw, o, dir } = await setup(t)
  const { json: made } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'bob' })
  t.equal((await call(gw, 'POST', '/api/chat', { authorization: `Bearer ${made.key}` }, chat)).status, 200)
  t.match(await call(gw, 'DELETE', `/admin/keys/${made.id}`, gw.auth('admin')), { status: 200, json: { id: made.id, revokedAt: String } })
  t.match(await call(gw, 'POST', '/api/chat', { authorization: `Bearer ${made.key}` }, chat), { status: 401, json: { error: 'API key revoked' } })
  t.match(await call(gw, 'POST', '/v1/chat/completions', { 'x-api-key': made.key }, chat), { status: 401, json: { error: { message: 'API key revoked', code: 'invalid_api_key' } } })
  t.equal((await call(gw, 'DELETE', `/admin/keys/${made.id}`, gw.auth('admin'))).status, 409, 'revoking twice')
  t.equal((await call(gw, 'DELETE', '/admin/keys/no-such-id', gw.auth('admin'))).status, 404)

  const expired = gw.app.gateway.keys.create({ owner: 'bob', role: 'user', createdBy: 'test', expiresAt: new Date(Date.now() - 1000) })
  t.match(await call(gw, 'POST', '/api/chat', { authorization: `Bearer ${expired.key}` }, chat), { status: 401, json: { error: 'API key expired' } })

  const { json: kept } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'carol' })
  await gw.app.close()
  const again = await startGateway(t, [{ name: 'o', type: 'ollama', url: o.url }], { store: { dir } })
  t.equal((await call(again, 'POST', '/api/chat', { authorization: `Bearer ${kept.key}` }, chat)).status, 200, 'the key works after a restart')
  t.match(await call(again, 'POST', '/api/chat', { authorization: `Bearer ${made.key}` }, chat), { status: 401 }, 'and the revoked one stays revoked')
})

t.test('a key narrowed to models: other models are refused and not listed', async (t) => {
  const { gw } = await setup(t)
  const { json: made } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'dave', models: ['llama3.2*'] })
  const auth = { authorization: `Bearer ${made.key}` }
  t.equal((await call(gw, 'POST', '/api/chat', auth, chat)).status, 200)
  t.match(await call(gw, 'POST', '/api/chat', auth, { ...chat, model: 'qwen3:8b' }), { status: 403, json: { error: "model 'qwen3:8b' is not available to this API key" } })
  t.same((await call(gw, 'GET', '/v1/models', auth)).json.data.map((m: { id: string }) => m.id), ['llama3.2:latest'])
  t.same((await call(gw, 'GET', '/api/tags', auth)).json.models.map((m: { name: string }) => m.name), ['llama3.2:latest'])
})

t.test('users manage their own keys with a login token, and nobody else\'s', async (t) => {
  const { gw } = await setup(t)
  const alice = gw.auth('user', 'alice')
  const mine = await call(gw, 'POST', '/v1/me/keys', alice, { name: 'laptop', models: ['llama*'] })
  t.match(mine, { status: 201, json: { key: /^cg_/, owner: 'alice', role: 'user', createdBy: 'alice', models: ['llama*'] } })
  const { json: bobs } = await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'bob' })
  t.same((await call(gw, 'GET', '/v1/me/keys', alice)).json.keys.map((k: { id: string }) => k.id), [mine.json.id], 'only her own')
  t.equal((await call(gw, 'DELETE', `/v1/me/keys/${bobs.id}`, alice)).status, 404, "bob's key is not hers to revoke")
  t.equal((await call(gw, 'POST', '/admin/keys', alice, { owner: 'alice', role: 'admin' })).status, 403, 'no admin keys for users')
  t.equal((await call(gw, 'GET', '/admin/keys', alice)).status, 403)
  t.equal((await call(gw, 'POST', '/v1/me/keys', { authorization: `Bearer ${mine.json.key}` }, {})).status, 403, 'a key cannot mint keys')
  t.equal((await call(gw, 'DELETE', `/v1/me/keys/${mine.json.id}`, alice)).status, 200)
})

t.test('bad input: malformed keys and headers, wrong fields', async (t) => {
  const { gw } = await setup(t)
  t.match(await call(gw, 'POST', '/api/chat', { authorization: 'Bearer cg_not-a-real-key' }, chat), { status: 401, json: { error: 'invalid API key' } })
  t.match(await call(gw, 'POST', '/api/chat', { 'x-api-key': '' }, chat), { status: 401, json: { error: /missing credentials/ } })
  t.equal((await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'x', role: 'root' })).status, 400)
  t.equal((await call(gw, 'POST', '/admin/keys', gw.auth('admin'), { owner: 'x', ttl: 'forever' })).status, 400)
  t.equal((await call(gw, 'POST', '/v1/me/keys', gw.auth('user'), { owner: 'someone-else' })).status, 400, 'no owner field for one\'s own keys')
})
