import { Type, type TObject } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { GatewayError } from '../errors.js'
import { toCsv } from '../usage/csv.js'
import { WHEN_HINT, givenFilters, parseFilter, parseGroupBy, parsePage, type UsageQuery } from '../usage/params.js'
import { ENTRY_COLUMNS, GROUP_FIELDS, TOTAL_COLUMNS, records, report, type UsageFilter } from '../usage/report.js'
import { utcDay } from '../usage/usage-log.js'
import { requireAdmin } from './guards.js'

// Usage reports: admins see everyone's (/admin/usage), every caller their own (/v1/me/usage).
// JSON by default; CSV with format=csv or Accept: text/csv.

const Name = (what: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: `a ${what}` }))
const When = Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: WHEN_HINT }))
const filters = {
  user: Name('user name'),
  model: Name('model name'),
  key: Name('API key id'),
  backend: Name('backend name'),
  from: When,
  to: When,
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')], { description: 'json or csv' })),
}
const ReportQuery = Type.Object({
  ...filters,
  groupBy: Type.Optional(Type.String({ maxLength: 200, description: `fields separated by commas, any of ${GROUP_FIELDS.join(', ')}` })),
}, { additionalProperties: false })
const RecordsQuery = Type.Object({
  ...filters,
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$', description: 'records per page, 1 to 100000 (default 100)' })),
  offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'records to skip (default 0)' })),
}, { additionalProperties: false })

/** Validation errors that name the parameter and what it takes, instead of a JSON pointer. */
function queryError (schema: TObject): (errors: FastifySchemaValidationError[]) => Error {
  return (errors) => {
    // Validation stops at the first error (allErrors: false).
    const first = errors[0]!
    if (first.keyword === 'additionalProperties') {
      return new GatewayError(400, `unknown query parameter '${String(first.params.additionalProperty)}'; known: ${Object.keys(schema.properties).join(', ')}`, 'invalid_request')
    }
    const name = first.instancePath.slice(1)
    // A wrong type is a repeated parameter (an array): the validator's words say it best.
    const description = first.keyword === 'type' ? undefined : schema.properties[name]?.description as string | undefined
    return new GatewayError(400, `invalid query parameter '${name}': ${description === undefined ? String(first.message) : `must be ${description}`}`, 'invalid_request')
  }
}

// Checked on request, before the query is validated: a user learns nothing from a 400.
const adminOnly = async (request: FastifyRequest): Promise<void> => { requireAdmin(request, 'the usage of all users') }

/** A caller's own figures: the user filter is theirs, whatever the query says. */
function own (request: FastifyRequest<{ Querystring: UsageQuery }>): UsageQuery {
  const user = request.principal.sub
  if (request.query.user !== undefined && request.query.user !== user) throw new GatewayError(403, 'you can see only your own usage', 'permission_denied')
  return { ...request.query, user }
}

function csv (request: FastifyRequest, query: UsageQuery): boolean {
  return query.format === 'csv' || (query.format === undefined && (request.headers.accept ?? '').includes('text/csv'))
}

function sendCsv (reply: FastifyReply, name: string, body: string): FastifyReply {
  return reply.type('text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="chatgate-${name}-${utcDay(Date.now())}.csv"`)
    .send(body)
}

export default async function usageRoutes (app: FastifyInstance): Promise<void> {
  const { db, usage } = app.gateway

  const answerReport = (request: FastifyRequest, reply: FastifyReply, query: UsageQuery): unknown => {
    const groupBy = parseGroupBy(query.groupBy)
    const filter: UsageFilter = parseFilter(query)
    // Requests that just finished wait in the buffer: a report includes them.
    usage.flush()
    const result = report(db, filter, groupBy)
    if (csv(request, query)) return sendCsv(reply, 'usage', toCsv([...groupBy, ...TOTAL_COLUMNS], result.rows))
    return { groupBy, filters: givenFilters(query), rows: result.rows, totals: result.totals }
  }

  const answerRecords = (request: FastifyRequest, reply: FastifyReply, query: UsageQuery): unknown => {
    const filter = parseFilter(query)
    const page = parsePage(query)
    usage.flush()
    const result = records(db, filter, page)
    if (csv(request, query)) return sendCsv(reply, 'usage-records', toCsv(ENTRY_COLUMNS, result.records))
    return { filters: givenFilters(query), total: result.total, ...page, records: result.records }
  }

  const reportRoute = { schema: { querystring: ReportQuery }, schemaErrorFormatter: queryError(ReportQuery) }
  const recordsRoute = { schema: { querystring: RecordsQuery }, schemaErrorFormatter: queryError(RecordsQuery) }

  app.get<{ Querystring: UsageQuery }>('/admin/usage', { ...reportRoute, onRequest: adminOnly }, async (request, reply) => answerReport(request, reply, request.query))
  app.get<{ Querystring: UsageQuery }>('/admin/usage/records', { ...recordsRoute, onRequest: adminOnly }, async (request, reply) => answerRecords(request, reply, request.query))
  app.get<{ Querystring: UsageQuery }>('/v1/me/usage', reportRoute, async (request, reply) => answerReport(request, reply, own(request)))
  app.get<{ Querystring: UsageQuery }>('/v1/me/usage/records', recordsRoute, async (request, reply) => answerRecords(request, reply, own(request)))
}
