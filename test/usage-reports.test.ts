// Usage reports: periods, filters and groupings in JSON and CSV, raw records by page, clear 400s
// for bad parameters; admins see everyone's figures, every caller only their own.
import t from 'tap'
import type { UsageRecord } from '../src/usage/usage-log.js'
import type { Gateway } from './helpers/gateway.js'
import { asCsv, get, parseCsv, setup } from './helpers/usage.js'
import { toCsv } from '../src/usage/csv.js'

/** Records at known times (the report routes flush them), to test periods, groups and CSV. */
function seed (gw: Gateway): UsageRecord[] {
  const base = { role: 'user' as const, endpoint: '/v1/chat/completions', estimated: false }
  const records: UsageRecord[] = [
    { ...base, ts: Date.parse('2025-05-31T23:59:59.999Z'), user: 'carol', model: 'm1', backend: 'b1', promptTokens: 1, completionTokens: 1, durationMs: 50, ttftMs: 5, status: 200 },
    { ...base, ts: Date.parse('2025-06-01T00:00:00.000Z'), user: 'carol', model: 'm1', backend: 'b1', promptTokens: 10, completionTokens: 20, durationMs: 100, ttftMs: 10, status: 200 },
    { ...base, ts: Date.parse('2025-06-01T12:00:00.000Z'), user: 'dan', keyId: 'k-1', model: 'm2', backend: 'b2', promptTokens: 5, completionTokens: 0, estimated: true, durationMs: 30, status: 499 },
    { ...base, ts: Date.parse('2025-06-02T08:00:00.000Z'), user: 'carol', model: 'weird,"name"\nx', backend: 'b1', endpoint: '/api/chat', promptTokens: 7, completionTokens: 3, durationMs: 70, ttftMs: 20, status: 502 },
    { ...base, ts: Date.parse('2025-07-01T00:00:00.000Z'), user: 'dan', model: 'm1', backend: 'b2', promptTokens: 100, completionTokens: 200, durationMs: 1000, ttftMs: 100, status: 200 },
  ]
  for (const r of records) gw.app.gateway.usage.record(r)
  return records
}

t.test('periods, filters and groupings; CSV parsed back equals the JSON', async (t) => {
  const { gw } = await setup(t)
  seed(gw)
  const admin = gw.auth('admin')
  const q = async (query: string): Promise<any> => {
    const answer = await get(gw, `/admin/usage?${query}`, admin)
    t.equal(answer.status, 200, query)
    return answer.json
  }
  t.same((await q('groupBy=month')).rows.map((r: any) => [r.month, r.requests]), [['2025-05', 1], ['2025-06', 3], ['2025-07', 1]])
  t.same((await q('from=2025-06-01&to=2025-06-02&groupBy=day')).rows.map((r: any) => [r.day, r.requests, r.promptTokens]), [['2025-06-01', 2, 15], ['2025-06-02', 1, 7]], 'dates include their whole day, at both ends')
  t.same((await q('from=2025-06-01T00:00:00Z&to=2025-06-01T00:00:00.000Z&groupBy=day')).totals.requests, 1, 'times include their ms, at both ends')
  t.same((await q('from=2025-06-01T02:00:00%2B02:00&to=2025-06-01T13:59:59%2B02:00')).totals.promptTokens, 10, 'zone offsets')
  t.same((await q('from=2025-06-01T02:00:00%2B02:00&to=2025-06-01T14:00:00%2B02:00')).totals.promptTokens, 15)
  t.same((await q('from=2025-06-02')).totals.requests, 2, 'from alone')
  t.same((await q('to=2025-05-31')).totals.requests, 1, 'to alone')
  t.same((await q('user=dan&groupBy=backend,model')).rows.map((r: any) => [r.backend, r.model, r.requests]), [['b2', 'm1', 1], ['b2', 'm2', 1]])
  const byKey = (await q('key=k-1&groupBy=key')).rows
  t.equal(byKey.length, 1)
  t.match(byKey, [{ key: 'k-1', requests: 1, errors: 1, estimated: 1, avgTtftMs: null }])
  const byOddModel = (await q(`model=${encodeURIComponent('weird,"name"\nx')}&groupBy=endpoint`)).rows
  t.equal(byOddModel.length, 1)
  t.match(byOddModel, [{ endpoint: '/api/chat', requests: 1, errors: 1 }])
  t.same((await q('backend=b1&groupBy=user')).rows.map((r: any) => [r.user, r.requests]), [['carol', 3]])
  t.same((await q('user=nobody')).rows, [], 'no records: no rows')
  t.same((await q('user=nobody')).totals, { requests: 0, errors: 0, estimated: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, avgDurationMs: null, avgTtftMs: null })
  const all = await q('groupBy=user')
  t.same(all.totals, { requests: 5, errors: 2, estimated: 1, promptTokens: 123, completionTokens: 224, totalTokens: 347, avgDurationMs: 250, avgTtftMs: 34 })
  t.same(all.filters, {})
  t.same((await q('user=carol&from=2025-06-01')).filters, { user: 'carol', from: '2025-06-01' }, 'the filters are echoed')

  // CSV: by format=csv or by Accept; format=json wins over Accept.
  const json = await q('groupBy=day,model')
  const columns = ['day', 'model', 'requests', 'errors', 'estimated', 'promptTokens', 'completionTokens', 'totalTokens', 'avgDurationMs', 'avgTtftMs']
  const csv = await get(gw, '/admin/usage?groupBy=day,model&format=csv', admin)
  t.equal(csv.type, 'text/csv; charset=utf-8')
  t.match(csv.disposition, /^attachment; filename="chatgate-usage-\d{4}-\d{2}-\d{2}\.csv"$/)
  t.ok(csv.text.includes('"weird,""name""\nx"'), 'a field with a comma, quotes and a line break is quoted')
  t.same(parseCsv(csv.text), asCsv(columns, json.rows))
  const accepted = await get(gw, '/admin/usage?groupBy=day,model', { ...admin, accept: 'text/csv' })
  t.equal(accepted.text, csv.text)
  t.equal((await get(gw, '/admin/usage?groupBy=day,model&format=json', { ...admin, accept: 'text/csv' })).type, 'application/json; charset=utf-8')

  // Raw records: newest first, by page, in JSON and CSV.
  const page1 = await get(gw, '/admin/usage/records?user=carol&limit=2', admin)
  t.match(page1.json, { total: 3, limit: 2, offset: 0, filters: { user: 'carol' } })
  t.same(page1.json.records.map((r: any) => r.time), ['2025-06-02T08:00:00.000Z', '2025-06-01T00:00:00.000Z'])
  const page2 = await get(gw, '/admin/usage/records?user=carol&limit=2&offset=2', admin)
  t.same(page2.json.records.map((r: any) => r.time), ['2025-05-31T23:59:59.999Z'])
  const every = await get(gw, '/admin/usage/records', admin)
  t.equal(every.json.records.length, 5)
  const recordsCsv = await get(gw, '/admin/usage/records?format=csv', admin)
  t.match(recordsCsv.disposition, /filename="chatgate-usage-records-/)
  const recordColumns = ['id', 'time', 'user', 'role', 'key', 'model', 'backend', 'endpoint', 'promptTokens', 'completionTokens', 'totalTokens', 'estimated', 'durationMs', 'ttftMs', 'status']
  t.same(parseCsv(recordsCsv.text), asCsv(recordColumns, every.json.records))
  t.equal((await get(gw, '/admin/usage/records?user=nobody&format=csv', admin)).text, `${recordColumns.join(',')}\r\n`, 'no records: the header alone')
})

t.test('CSV fields that a spreadsheet would run as a formula are written as text; numbers stay numbers', async (t) => {
  const { gw } = await setup(t)
  const base = { role: 'user' as const, endpoint: '/api/chat', estimated: false, backend: 'b1', durationMs: 10, status: 200 }
  gw.app.gateway.usage.record({ ...base, ts: Date.parse('2025-06-01T00:00:00Z'), user: '@mallory', model: '=HYPERLINK("http://evil.example","open")', promptTokens: 1, completionTokens: 1 })
  gw.app.gateway.usage.record({ ...base, ts: Date.parse('2025-06-01T00:00:01Z'), user: 'eve', model: '+cmd|calc', promptTokens: 2, completionTokens: 2 })
  gw.app.gateway.usage.record({ ...base, ts: Date.parse('2025-06-01T00:00:02Z'), user: '-eve', model: 'llama3.1:8b', promptTokens: 3, completionTokens: 3 })
  const csv = (await get(gw, '/admin/usage?groupBy=user,model&format=csv', gw.auth('admin'))).text
  t.same(parseCsv(csv).slice(1).map((row) => row.slice(0, 3)), [
    ["'-eve", 'llama3.1:8b', '1'],
    ["'@mallory", '\'=HYPERLINK("http://evil.example","open")', '1'],
    ['eve', "'+cmd|calc", '1'],
  ])
  t.ok(csv.includes(`"'=HYPERLINK(""http://evil.example"",""open"")"`), 'quoted as RFC 4180 has it, after the apostrophe')
  t.equal(toCsv(['n', 's'], [{ n: -5, s: '-5' }, { n: 0, s: '\tx' }]), "n,s\r\n-5,'-5\r\n0,'\tx\r\n", 'a negative number is a number; text is text')
})

t.test('bad query parameters: 400 naming the parameter', async (t) => {
  const { gw } = await setup(t)
  const cases: Array<[string, RegExp]> = [
    ['/admin/usage?from=2025-13-01', /'from': '2025-13-01' is not a UTC date \(2025-06-01, the whole day\) or an ISO 8601 time with a zone/],
    ['/admin/usage?to=2025-02-30', /'to': '2025-02-30' is not a UTC date/],
    ['/admin/usage?to=2025-02-30T10:00:00Z', /'to': '2025-02-30T10:00:00Z' is not/],
    ['/admin/usage?from=2025-06-01T10:00:00', /'from': .* with a zone/],
    ['/admin/usage?from=2025-06-01T25:00:00Z', /'from'/],
    ['/admin/usage?from=yesterday', /'from'/],
    ['/admin/usage?from=', /'from': must be a UTC date/],
    ['/admin/usage?from=2025-06-03&to=2025-06-02', /'to': the period ends \(2025-06-02\) before it starts \(2025-06-03\)/],
    ['/admin/usage?groupBy=day,colour', /'groupBy': unknown field 'colour'; use any of day, month, user, model, key, backend, endpoint/],
    ['/admin/usage?groupBy=', /'groupBy': an empty field/],
    ['/admin/usage?groupBy=day,day', /'groupBy': a field is named twice/],
    ['/admin/usage?format=xml', /'format': must be json or csv/],
    ['/admin/usage?usr=alice', /unknown query parameter 'usr'; known: user, model, key, backend, from, to, format, groupBy/],
    ['/admin/usage?user=a&user=b', /'user': must be string/],
    ['/admin/usage/records?limit=0', /'limit': must be 1 to 100000/],
    ['/admin/usage/records?limit=100001', /'limit': must be 1 to 100000/],
    ['/admin/usage/records?limit=ten', /'limit': must be records per page/],
    ['/admin/usage/records?offset=-1', /'offset'/],
    ['/admin/usage/records?groupBy=day', /unknown query parameter 'groupBy'/],
    ['/v1/me/usage?to=2025-1-1', /'to'/],
  ]
  for (const [path, message] of cases) {
    const answer = await get(gw, path, gw.auth('admin'))
    t.equal(answer.status, 400, path)
    t.match(answer.json, { error: { message, type: 'invalid_request_error', code: 'invalid_request' } }, path)
  }
})

t.test('admin reports refuse a user token; /v1/me/usage shows only the caller\'s figures', async (t) => {
  const { gw } = await setup(t)
  seed(gw)
  const carol = gw.auth('user', 'carol')
  for (const path of ['/admin/usage', '/admin/usage/records', '/admin/usage?from=not-a-date', '/admin/usage?format=csv']) {
    const refused = await get(gw, path, carol)
    t.equal(refused.status, 403, path)
    t.match(refused.json, { error: { message: /for admins only/, type: 'permission_error', param: null, code: 'permission_denied' } })
  }
  t.equal((await get(gw, '/admin/usage', {})).status, 401, 'no credentials')

  const mine = await get(gw, '/v1/me/usage?groupBy=user,model', carol)
  t.equal(mine.status, 200)
  t.same(mine.json.rows.map((r: any) => [r.user, r.model, r.requests]), [['carol', 'm1', 2], ['carol', 'weird,"name"\nx', 1]])
  t.match(mine.json, { filters: { user: 'carol' }, totals: { requests: 3, promptTokens: 18 } })
  t.equal((await get(gw, '/v1/me/usage?user=carol', carol)).status, 200, 'naming oneself is fine')
  const others = await get(gw, '/v1/me/usage?user=dan', carol)
  t.match(others, { status: 403, json: { error: { message: 'you can see only your own usage', code: 'permission_denied' } } })
  t.equal((await get(gw, '/v1/me/usage/records?user=dan', carol)).status, 403)
  const records = await get(gw, '/v1/me/usage/records', carol)
  t.equal(records.json.total, 3)
  t.ok(records.json.records.every((r: any) => r.user === 'carol'))
  const dan = await get(gw, '/v1/me/usage?groupBy=model&format=csv', gw.auth('user', 'dan'))
  t.same(parseCsv(dan.text).map((r) => r.slice(0, 2)), [['model', 'requests'], ['m1', '1'], ['m2', '1']])
  t.same((await get(gw, '/v1/me/usage', gw.auth('user', 'nobody'))).json.rows, [], 'a caller without usage')
})
