// Small DOM helpers for the dashboard. Every value reaches the page as a text node or an
// attribute, never as markup: nothing from the API is ever parsed as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg'

function build (node, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value)
    else node.setAttribute(name, value === true ? '' : String(value))
  }
  append(node, children)
  return node
}

function append (node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
}

/** An HTML element: el('td', { class: 'num' }, 'text', otherNode). */
export function el (tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children)
}

/** An SVG element, for the charts. */
export function svg (tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children)
}

/** Replaces a node's children. */
export function fill (node, ...children) {
  node.replaceChildren()
  append(node, children)
  return node
}

export const byId = (id) => document.getElementById(id)

/** A table body's rows, or one row that says there is nothing (spanning every column). */
export function rows (tbody, list, toRow, empty) {
  const columns = tbody.closest('table').querySelectorAll('thead th').length
  fill(tbody, list.length > 0 ? list.map(toRow) : el('tr', { class: 'empty' }, el('td', { colspan: columns }, empty)))
}

/** A bar whose length shows a share (0..1), sized through the CSSOM (the CSP forbids style attributes). */
export function bar (share, title) {
  const inner = el('span', { class: 'bar-fill' })
  inner.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`
  return el('span', { class: 'bar', title }, inner)
}

const pad = (n) => String(n).padStart(2, '0')

export const format = {
  number: (n) => n === null || n === undefined ? '–' : Number(n).toLocaleString('en'),
  ms: (n) => n === null || n === undefined ? '–' : `${Number(n).toLocaleString('en')} ms`,
  /** Local time, minutes: 2025-06-01 14:05. */
  time: (iso) => {
    if (iso === null || iso === undefined) return '–'
    const d = new Date(iso)
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
  },
  /** Local hours and minutes: 14:05. */
  clock: (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}`,
}

/** The section's error line shows the problem; none clears it. Errors are never swallowed. */
export function showError (node, err) {
  if (err === undefined || err === null) {
    node.hidden = true
    node.textContent = ''
    return
  }
  node.hidden = false
  node.textContent = err instanceof Error ? err.message : String(err)
}

/** A short-lived note beside a form ("user bob created"). */
export function note (node, text, kind = 'ok') {
  node.hidden = false
  node.className = `note ${kind}`
  node.textContent = text
}

const shown = new WeakMap()

/**
 * True when `node` already shows exactly `data`: a refresh that changes nothing leaves the page
 * alone (a half-done two-click action, a hovered tooltip, a text selection all survive it).
 */
export function unchanged (node, data) {
  const text = JSON.stringify(data)
  if (shown.get(node) === text) return true
  shown.set(node, text)
  return false
}
