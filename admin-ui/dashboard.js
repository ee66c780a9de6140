// The ChatGate admin dashboard: fills the sections of index.html from the admin API and keeps
// them current, every 5 s while the page is visible. Plain browser JS, no build step.

import { SignedOut, session } from './api.js'
import { refreshKeys, refreshUsers, setUpAccounts } from './accounts.js'
import { byId, el, fill, format, showError } from './dom.js'
import { refreshActivity, refreshConfig, refreshStatus, setUpReload } from './sections.js'
import { refreshUsage, setUpUsage } from './usage.js'

const REFRESH_MS = 5000

/** Each part of the page: how it is read, and the line where its problems show. */
const parts = [
  { refresh: refreshStatus, error: 'backends-error' },
  { refresh: refreshActivity, error: 'activity-error' },
  { refresh: refreshUsage, error: 'usage-error' },
  { refresh: refreshUsers, error: 'users-error' },
  { refresh: refreshKeys, error: 'keys-error' },
  { refresh: refreshConfig, error: 'config-error' },
]

let timer
let running
/** Signed out: nothing more to show until the browser signs in again. */
let stopped = false

function banner (...content) {
  const line = byId('banner')
  fill(line, ...content)
  line.hidden = content.length === 0
}

function signedOut (err) {
  stopped = true
  clearTimeout(timer)
  banner(`${err.message} `, el('a', { href: `/auth/sign-in?rd=${encodeURIComponent('/admin')}` }, 'Sign in'))
}

async function refreshAll () {
  const results = await Promise.all(parts.map((part) => part.refresh().then(
    () => { showError(byId(part.error)); return undefined },
    (err) => { if (!(err instanceof SignedOut)) showError(byId(part.error), err); return err })))
  const gone = results.find((err) => err instanceof SignedOut)
  if (gone !== undefined) return signedOut(gone)
  if (results.every((err) => err === undefined)) banner()
  byId('updated').textContent = `updated ${format.clock(new Date())}`
  byId('updated').dataset.at = String(Date.now())
}

/** One refresh at a time: a click during a refresh waits for it instead of starting another. */
function refreshNow () {
  running ??= refreshAll().finally(() => { running = undefined })
  return running
}

function schedule () {
  clearTimeout(timer)
  timer = setTimeout(async () => {
    if (document.visibilityState === 'visible' && byId('auto').checked) await refreshNow()
    if (!stopped) schedule()
  }, REFRESH_MS)
}

async function start () {
  setUpUsage()
  setUpAccounts()
  setUpReload(() => refreshNow())
  byId('refresh').addEventListener('click', () => { void refreshNow() })
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && !stopped) void refreshNow()
  })
  try {
    byId('who').textContent = `signed in as ${(await session()).user}`
  } catch (err) {
    if (err instanceof SignedOut) return signedOut(err)
    banner(`The dashboard cannot reach the admin API: ${err.message}`)
  }
  await refreshNow()
  if (!stopped) schedule()
}

void start()
