// Shared by the usage tests: a gateway over an Ollama and a Xinference emulator with the usage
// timer far off (reports flush), GET with the answer read, and an independent CSV reader.
import type { Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword } from '../../src/auth/passwords.js'
import { OllamaEmulator } from '../emulators/ollama.js'
import { XinferenceEmulator } from '../emulators/xinference.js'
import { startGateway, type Gateway } from './gateway.js'

/** An Ollama and a Xinference backend behind one gateway whose usage timer never fires by itself. */
export async function setup (t: Test): Promise<{ gw: Gateway, o: OllamaEmulator, x: XinferenceEmulator }> {
  const dir = mkdtempSync(join(tmpdir(), 'chatgate-usage-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest'], embeddingModels: ['all-minilm:latest'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }, { uid: 'bge-uid', name: 'bge-small-en', type: 'embedding' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  // Admin-created keys need an owner the gateway knows.
  const users = [{ username: 'erin', passwordHash: await hashPassword('erin-password'), role: 'user' }]
  const gw = await startGateway(t, [{ name: 'ol', type: 'ollama', url: o.url }, { name: 'xi', type: 'xinference', url: x.url }],
    { store: { dir, usageFlushMs: 600_000 }, auth: { users } })
  return { gw, o, x }
}

export interface Answer { status: number, type: string | null, disposition: string | null, text: string, json: any }

export async function get (gw: Gateway, path: string, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${gw.url}${path}`, { headers })
  const text = await res.text()
  let json: unknown
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, type: res.headers.get('content-type'), disposition: res.headers.get('content-disposition'), text, json }
}

/** RFC 4180, read back independently of the code that wrote it. */
export function parseCsv (text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      if (c !== '"') field += c
      else if (text[i + 1] === '"') { field += '"'; i++ } else quoted = false
    } else if (c === '"') quoted = true
    else if (c === ',') { row.push(field); field = '' } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field)
      rows.push(row)
      row = []
      field = ''
      i++
    } else field += c
  }
  if (field !== '' || row.length > 0) throw new Error('CSV does not end with CRLF')
  return rows
}

/** JSON rows as the CSV must show them: same columns, absent values empty. */
export const asCsv = (columns: string[], rows: Array<Record<string, unknown>>): string[][] =>
  [columns, ...rows.map((r) => columns.map((c) => r[c] === null || r[c] === undefined ? '' : String(r[c])))]

