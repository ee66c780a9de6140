// The read-only sections: backends and queues, activity charts, certificates, running config.

import { api } from './api.js'
import { barChart, lineChart } from './charts.js'
import { bar, byId, el, fill, format, rows, unchanged } from './dom.js'

const DAY_MS = 86_400_000
export const ACTIVITY_MINUTES = 60

function health (b) {
  if (b.up) return el('span', { class: 'badge up', 'data-testid': 'health' }, b.discovered ? 'up' : 'up (not yet listed)')
  return el('span', {},
    el('span', { class: 'badge down', 'data-testid': 'health' }, 'down'),
    b.lastError === null ? null : el('span', { class: 'detail' }, ` ${b.lastError}`),
    b.downUntil === null ? null : el('span', { class: 'detail' }, ` · next try ${format.time(b.downUntil)}`))
}

function slots (b) {
  return el('span', { class: 'slots' },
    bar(b.inFlight / b.maxConcurrent, `${b.inFlight} of ${b.maxConcurrent} slots in use`),
    el('span', { class: 'num', 'data-testid': 'slots' }, `${b.inFlight} / ${b.maxConcurrent}`))
}

function models (b) {
  if (b.models.length === 0) return el('span', { class: 'detail' }, 'none listed')
  return el('ul', { class: 'models' }, b.models.map((m) =>
    el('li', { class: m.loaded ? 'loaded' : undefined, title: m.loaded ? 'loaded in memory' : 'installed' }, m.loaded ? '● ' : '○ ', m.name)))
}

export function renderStatus (status) {
  if (unchanged(byId('backends-body'), status)) return
  rows(byId('backends-body'), status.backends, (b) => el('tr', { 'data-testid': 'backend-row', 'data-name': b.name },
    el('td', {}, el('strong', { 'data-testid': 'backend-name' }, b.name), el('div', { class: 'detail' }, `${b.type} · ${b.url}`)),
    el('td', {}, health(b)),
    el('td', {}, slots(b)),
    el('td', {}, models(b)),
    el('td', {}, b.version ?? '–')), 'No backends are configured.')
  const queues = byId('queues')
  if (status.queues.length === 0) fill(queues, el('p', { class: 'detail' }, 'No request is waiting for a slot.'))
  else {
    const max = Math.max(...status.queues.map((q) => q.waiting))
    fill(queues, el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Model'), el('th', {}, 'Waiting'), el('th', {}, ''))),
      el('tbody', {}, status.queues.map((q) => el('tr', { 'data-testid': 'queue-row', 'data-model': q.model },
        el('td', {}, q.model), el('td', { class: 'num' }, format.number(q.waiting)), el('td', {}, bar(q.waiting / max, `${q.waiting} waiting`)))))))
  }
  renderCertificates(status)
  const names = new Set(status.backends.flatMap((b) => b.models.map((m) => m.name)))
  fill(byId('model-names'), [...names].sort().map((n) => el('option', { value: n })))
}

function renderCertificates (status) {
  const off = status.tlsMode === 'off'
  byId('tls-mode').textContent = off ? 'TLS is off (tls.mode: off): ChatGate serves plain HTTP.' : `tls.mode: ${status.tlsMode}`
  rows(byId('certificates-body'), status.certificates, (c) => {
    const daysLeft = c.notAfter === undefined ? undefined : Math.floor((Date.parse(c.notAfter) - Date.now()) / DAY_MS)
    const urgency = daysLeft === undefined ? 'missing' : daysLeft < 3 ? 'danger' : daysLeft < 14 ? 'warn' : 'ok'
    return el('tr', { 'data-testid': 'certificate-row' },
      el('td', {}, c.names.join(', ')),
      el('td', {}, format.time(c.notAfter)),
      el('td', { class: `num ${urgency}`, 'data-testid': 'days-left' }, daysLeft === undefined ? 'none yet' : String(daysLeft)),
      el('td', {}, format.time(c.renewAt)),
      el('td', { class: c.lastError === undefined ? undefined : 'danger' }, c.lastError ?? '–',
        c.nextAttemptAt === undefined ? null : el('div', { class: 'detail' }, `next attempt ${format.time(c.nextAttemptAt)}`)),
      el('td', { class: 'num' }, String(c.failures)))
  }, off ? 'No certificates: TLS is off.' : 'No certificates yet.')
}

export async function refreshStatus () {
  renderStatus(await api('GET', '/admin/status'))
}

export async function refreshActivity () {
  const data = await api('GET', `/admin/activity?minutes=${ACTIVITY_MINUTES}`)
  if (unchanged(byId('requests-chart-box'), data)) return
  const points = data.buckets.map((b) => ({ ...b, at: new Date(b.at) }))
  const requests = points.reduce((n, b) => n + b.requests, 0)
  const errors = points.reduce((n, b) => n + b.errors, 0)
  const tokens = points.reduce((n, b) => n + b.tokens, 0)
  const timed = points.filter((b) => b.ttftMsAvg !== null)
  fill(byId('activity-total'),
    el('strong', { 'data-testid': 'activity-total' }, `${format.number(requests)} ${requests === 1 ? 'request' : 'requests'} in the last ${data.minutes} min`),
    `, ${format.number(errors)} failed, ${format.number(tokens)} tokens`,
    timed.length === 0 ? '' : `, first token after ${format.ms(Math.round(timed.reduce((n, b) => n + b.ttftMsAvg * b.requests, 0) / timed.reduce((n, b) => n + b.requests, 0)))} on average`)
  const when = (p) => `${format.clock(p.at)}–${format.clock(new Date(p.at.getTime() + 60_000))}`
  fill(byId('requests-chart-box'), barChart(points.map((p) => ({ at: p.at, value: p.requests })), {
    testid: 'requests-chart',
    title: 'Requests per minute',
    unit: 'req/min',
    describe: (p) => `${when(p)}: ${p.value} ${p.value === 1 ? 'request' : 'requests'}`,
  }))
  fill(byId('ttft-chart-box'), lineChart(points.map((p) => ({ at: p.at, value: p.ttftMsAvg })), {
    testid: 'ttft-chart',
    title: 'Average time to first token per minute',
    unit: 'ms',
    describe: (p) => `${when(p)}: first token after ${format.ms(p.value)} on average`,
  }))
}

function reloadSummary (reloads) {
  const last = reloads.last
  const facts = [
    ['Config file', reloads.file ?? '(none: built from an object)'],
    ['Running config loaded', format.time(reloads.loadedAt)],
    ['Reloads', `${reloads.succeeded} succeeded, ${reloads.failed} failed`],
  ]
  if (last === null) facts.push(['Last reload', 'none since start'])
  else {
    facts.push(['Last reload', `${format.time(last.at)} (${last.trigger}): ${last.ok ? 'applied' : 'refused; the running config stays'}`])
    if (last.problems.length > 0) facts.push(['Problems', el('ul', {}, last.problems.map((p) => el('li', { class: 'danger' }, p)))])
    facts.push(['Applied', last.applied.length === 0 ? 'nothing' : last.applied.join(', ')])
    facts.push(['Needs a restart', last.restartRequired.length === 0 ? 'nothing' : last.restartRequired.join(', ')])
  }
  return el('dl', { class: 'facts', 'data-testid': 'reload-summary' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
}

/** The reload button: the file read again now (POST /admin/reload), and what came of it. */
export function setUpReload (refreshed) {
  const button = byId('reload')
  const result = byId('reload-result')
  button.addEventListener('click', async () => {
    button.disabled = true
    result.className = ''
    result.textContent = 'reloading…'
    try {
      const done = await api('POST', '/admin/reload')
      result.textContent = `applied: ${done.applied.length === 0 ? 'nothing changed' : done.applied.join(', ')}` +
        (done.restartRequired.length === 0 ? '' : `; needs a restart: ${done.restartRequired.join(', ')}`)
    } catch (err) {
      result.className = 'danger'
      result.textContent = err.message
    } finally {
      button.disabled = false
      await refreshed()
    }
  })
}

export async function refreshConfig () {
  const data = await api('GET', '/admin/config')
  if (unchanged(byId('config-json'), data)) return
  fill(byId('reloads'), reloadSummary(data.reloads))
  const text = JSON.stringify(data.config, null, 2)
  const pre = byId('config-json')
  // Rewritten only when it changed: a refresh must not undo a selection being copied.
  if (pre.textContent !== text) pre.textContent = text
}
