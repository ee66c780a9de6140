// Usage per user and per model over a period (GET /admin/usage), with a bar per row, and the
// same figures as CSV.

import { api, query } from './api.js'
import { bar, byId, el, format, note, rows, showError, unchanged } from './dom.js'

const DAY_MS = 86_400_000
const utcDate = (ms) => new Date(ms).toISOString().slice(0, 10)

/** The report's filters from the form: periods are UTC days, as the usage table counts them. */
function filters () {
  const form = byId('usage-form')
  const period = form.elements.period.value
  const today = Date.now()
  const bounds = {
    today: { from: utcDate(today) },
    '7d': { from: utcDate(today - 6 * DAY_MS) },
    '30d': { from: utcDate(today - 29 * DAY_MS) },
    custom: { from: form.elements.from.value, to: form.elements.to.value },
  }[period]
  return { ...bounds, user: form.elements.user.value.trim(), model: form.elements.model.value.trim() }
}

function table (tbody, field, report, what) {
  const most = Math.max(1, ...report.rows.map((r) => r.totalTokens))
  rows(tbody, report.rows, (r) => el('tr', { 'data-testid': 'usage-row', 'data-name': r[field] ?? '' },
    el('td', {}, r[field] ?? '(none)'),
    el('td', { class: 'num', 'data-testid': 'requests' }, format.number(r.requests)),
    el('td', { class: r.errors > 0 ? 'num danger' : 'num' }, format.number(r.errors)),
    el('td', { class: 'num' }, format.number(r.promptTokens)),
    el('td', { class: 'num' }, format.number(r.completionTokens)),
    el('td', { class: 'num', 'data-testid': 'tokens' }, format.number(r.totalTokens)),
    el('td', { class: 'num' }, format.ms(r.avgTtftMs)),
    el('td', {}, bar(r.totalTokens / most, `${format.number(r.totalTokens)} tokens`))), `No ${what} used a model in this period.`)
}

export async function refreshUsage () {
  const given = filters()
  const [byUser, byModel] = await Promise.all([
    api('GET', `/admin/usage${query({ ...given, groupBy: 'user' })}`),
    api('GET', `/admin/usage${query({ ...given, groupBy: 'model' })}`),
  ])
  if (unchanged(byId('usage-user-body'), [byUser, byModel])) return
  table(byId('usage-user-body'), 'user', byUser, 'user')
  table(byId('usage-model-body'), 'model', byModel, 'model was')
  const t = byUser.totals
  byId('usage-total').textContent = `${format.number(t.requests)} requests, ${format.number(t.totalTokens)} tokens ` +
    `(${format.number(t.promptTokens)} prompt, ${format.number(t.completionTokens)} completion), ${format.number(t.errors)} failed`
}

async function downloadCsv () {
  const text = await api('GET', `/admin/usage${query({ ...filters(), groupBy: 'day,user,model', format: 'csv' })}`, undefined, 'text/csv')
  const link = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: `chatgate-usage-${utcDate(Date.now())}.csv` })
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000)
}

export function setUpUsage () {
  const form = byId('usage-form')
  const error = byId('usage-error')
  const showCustom = () => {
    for (const label of form.querySelectorAll('.custom')) label.hidden = form.elements.period.value !== 'custom'
  }
  form.elements.period.addEventListener('change', showCustom)
  showCustom()
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    refreshUsage().then(() => showError(error), (err) => showError(error, err))
  })
  byId('usage-csv').addEventListener('click', () => {
    downloadCsv().then(() => note(byId('usage-note'), 'CSV downloaded.'), (err) => showError(error, err))
  })
}
