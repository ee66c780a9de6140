import { isIP } from 'node:net'

// DNS names on certificates: checked when the config loads, matched against SNI per connection.

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i

/** What is wrong with `name` as a certificate name, or undefined when it is fine. */
export function nameProblem (name: string, publicCa: boolean): string | undefined {
  if (isIP(name) !== 0 || /^\[.*\]$/.test(name)) return 'is an IP address; certificates here are for DNS names'
  const host = name.startsWith('*.') ? name.slice(2) : name
  if (host.includes('*')) return 'a wildcard must be the whole leftmost label, as in *.example.org'
  if (name.length > 253) return 'is longer than 253 characters'
  const labels = host.split('.')
  if (!labels.every((l) => LABEL.test(l))) return 'is not a valid DNS name (letters, digits and hyphens in dot-separated labels)'
  if (publicCa && labels.length < 2) return 'needs a domain (a CA does not issue for a single label)'
  return undefined
}

/** Whether a certificate name (maybe `*.x.y`) covers the host a client asked for. */
export function covers (name: string, host: string): boolean {
  const a = name.toLowerCase()
  const b = host.toLowerCase()
  if (!a.startsWith('*.')) return a === b
  const dot = b.indexOf('.')
  return dot > 0 && b.slice(dot + 1) === a.slice(2)
}
