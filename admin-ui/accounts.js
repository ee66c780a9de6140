// Users (list, create, disable/enable) and API keys (list, create, revoke) over the admin API.

import { api, session } from './api.js'
import { byId, el, fill, format, note, rows, showError, unchanged } from './dom.js'

/** How long a "Revoke" button waits for its confirming second click. */
const CONFIRM_MS = 5000

function userAction (user, me) {
  if (user.source === 'config') return el('span', { class: 'detail' }, 'config file')
  if (user.name === me) return el('span', { class: 'detail' }, 'you')
  return el('button', {
    type: 'button',
    'data-testid': user.enabled ? 'disable-user' : 'enable-user',
    onclick: (event) => act(event.target, byId('users-error'), async () => {
      await api('PATCH', `/admin/users/${encodeURIComponent(user.name)}`, { enabled: !user.enabled })
      note(byId('users-note'), `User ${user.name} ${user.enabled ? 'disabled: their sessions and tokens are refused from now on' : 'enabled'}.`)
      await refreshUsers()
    }),
  }, user.enabled ? 'Disable' : 'Enable')
}

export async function refreshUsers () {
  const [{ users: list }, me] = await Promise.all([api('GET', '/admin/users'), session()])
  if (unchanged(byId('users-body'), [list, me.user])) return
  rows(byId('users-body'), list, (u) => el('tr', { 'data-testid': 'user-row', 'data-name': u.name, class: u.enabled ? undefined : 'off' },
    el('td', {}, u.name),
    el('td', {}, u.email ?? '–'),
    el('td', {}, u.role),
    el('td', {}, u.source),
    el('td', {}, u.enabled ? 'enabled' : 'disabled'),
    el('td', {}, format.time(u.createdAt)),
    el('td', {}, userAction(u, me.user))), 'No users yet.')
  // The owners a new key may have; the choice made stays.
  const owner = byId('key-form').elements.owner
  const chosen = owner.value
  fill(owner, list.map((u) => el('option', { value: u.name, selected: u.name === chosen }, `${u.name} (${u.role})`)))
  fill(byId('user-names'), list.map((u) => el('option', { value: u.name })))
}

function keyState (key) {
  if (key.revokedAt !== undefined) return 'revoked'
  if (key.expiresAt !== undefined && Date.parse(key.expiresAt) <= Date.now()) return 'expired'
  return 'active'
}

function revokeButton (key) {
  let armed
  const button = el('button', { type: 'button', class: 'danger', 'data-testid': 'revoke' }, 'Revoke')
  // Two clicks: the first asks, the second revokes (a dialog would block the page's refreshes).
  button.addEventListener('click', () => {
    if (armed === undefined) {
      button.textContent = 'Click again to revoke'
      armed = setTimeout(() => { armed = undefined; button.textContent = 'Revoke' }, CONFIRM_MS)
      return
    }
    clearTimeout(armed)
    act(button, byId('keys-error'), async () => {
      await api('DELETE', `/admin/keys/${encodeURIComponent(key.id)}`)
      note(byId('keys-note'), `Key ${key.name || key.prefix} of ${key.owner} revoked: it is refused from now on.`)
      await refreshKeys()
    })
  })
  return button
}

export async function refreshKeys () {
  const { keys } = await api('GET', '/admin/keys')
  if (unchanged(byId('keys-body'), keys)) return
  const order = { active: 0, expired: 1, revoked: 2 }
  const listed = keys.map((k) => ({ ...k, state: keyState(k) })).sort((a, b) => order[a.state] - order[b.state] || b.createdAt.localeCompare(a.createdAt))
  rows(byId('keys-body'), listed, (k) => el('tr', { 'data-testid': 'key-row', 'data-id': k.id, 'data-name': k.name, class: k.state === 'active' ? undefined : 'off' },
    el('td', {}, k.name || '–'),
    el('td', {}, el('code', {}, `${k.prefix}…`)),
    el('td', {}, k.owner),
    el('td', {}, k.role),
    el('td', {}, k.models === undefined ? 'all of its role' : k.models.join(', ')),
    el('td', {}, format.time(k.createdAt), el('div', { class: 'detail' }, `by ${k.createdBy}`)),
    el('td', {}, format.time(k.expiresAt)),
    el('td', { 'data-testid': 'key-state' }, k.state === 'revoked' ? `revoked ${format.time(k.revokedAt)}` : k.state),
    el('td', {}, k.state === 'revoked' ? null : revokeButton(k))), 'No API keys yet.')
}

/** Runs a button's action with the button disabled meanwhile; a failure is shown, never lost. */
function act (button, errorLine, action) {
  button.disabled = true
  return action().then(() => showError(errorLine), (err) => showError(errorLine, err)).finally(() => { button.disabled = false })
}

function fields (form, names) {
  const out = {}
  for (const name of names) {
    const value = form.elements[name].value.trim()
    if (value !== '') out[name] = value
  }
  return out
}

export function setUpAccounts () {
  const userForm = byId('user-form')
  userForm.addEventListener('submit', (event) => {
    event.preventDefault()
    act(userForm.querySelector('button[type=submit]'), byId('users-error'), async () => {
      const user = await api('POST', '/admin/users', { ...fields(userForm, ['name', 'role', 'email']), password: userForm.elements.password.value })
      userForm.reset()
      note(byId('users-note'), `User ${user.name} (${user.role}) created.`)
      await refreshUsers()
    })
  })

  const keyForm = byId('key-form')
  keyForm.addEventListener('submit', (event) => {
    event.preventDefault()
    act(keyForm.querySelector('button[type=submit]'), byId('keys-error'), async () => {
      const spec = fields(keyForm, ['owner', 'role', 'name', 'ttl'])
      const models = keyForm.elements.models.value.split(',').map((m) => m.trim()).filter((m) => m !== '')
      const created = await api('POST', '/admin/keys', { ...spec, ...(models.length > 0 && { models }) })
      showSecret(created)
      keyForm.elements.name.value = ''
      await refreshKeys()
    })
  })
  byId('copy-key').addEventListener('click', () => {
    const secret = byId('new-key-secret').textContent
    // The clipboard API needs HTTPS (or localhost); otherwise the text stays selected to copy by hand.
    const selectIt = () => window.getSelection().selectAllChildren(byId('new-key-secret'))
    if (navigator.clipboard === undefined) return selectIt()
    navigator.clipboard.writeText(secret).then(() => note(byId('keys-note'), 'Key copied to the clipboard.'), selectIt)
  })
  byId('dismiss-key').addEventListener('click', () => {
    byId('new-key').hidden = true
    byId('new-key-secret').textContent = ''
  })
}

function showSecret (created) {
  byId('new-key-about').textContent = `New key ${created.name || created.prefix} for ${created.owner} (${created.role}). Copy it now: it is shown only this once.`
  byId('new-key-secret').textContent = created.key
  byId('new-key').hidden = false
}
