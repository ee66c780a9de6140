import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { escapeHtml } from '../html.js'

// The dashboard's files (admin-ui/ in the package: plain HTML, JS and CSS, no build step), read
// into memory once, and the page a signed-in non-admin gets instead.

/**
 * Everything comes from the gateway itself; no inline script or style anywhere, so nothing a
 * value could inject would run. `style-src` allows no inline styles: the scripts set sizes
 * through the CSSOM, which CSP does not restrict.
 */
export const DASHBOARD_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** The files served under /admin/assets/, and their types. Nothing else is ever read or served. */
const ASSET_TYPES: Record<string, string> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'api.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'sections.js': 'text/javascript; charset=utf-8',
  'accounts.js': 'text/javascript; charset=utf-8',
  'usage.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
}

export interface Asset { body: Buffer, type: string, etag: string }

export interface DashboardUi {
  page: Buffer
  assets: Map<string, Asset>
}

function read (dir: URL, name: string): Buffer {
  try {
    return readFileSync(new URL(name, dir))
  } catch (err) {
    // A package or image built without admin-ui/: say so rather than ENOENT.
    throw new Error(`the admin dashboard's file ${fileURLToPath(new URL(name, dir))} cannot be read (admin-ui/ ships with ChatGate): ${(err as Error).message}`)
  }
}

/** Reads the dashboard's files from `dir` (a file: URL ending in /); throws when one is missing. */
export function loadUi (dir: URL): DashboardUi {
  const assets = new Map<string, Asset>()
  for (const [name, type] of Object.entries(ASSET_TYPES)) {
    const body = read(dir, name)
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` })
  }
  return { page: read(dir, 'index.html'), assets }
}

/** What a signed-in user who is not an admin sees at /admin. */
export function notAdminPage (user: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Admins only · ChatGate</title>
<link rel="stylesheet" href="/admin/assets/dashboard.css">
</head>
<body class="refused">
<main>
<h1>Admins only</h1>
<p data-testid="refused">The ChatGate dashboard is for admins. You are signed in as <strong>${escapeHtml(user)}</strong>, who is not an admin.</p>
<p><a href="/auth/sign-out">Sign out</a> to sign in as someone else.</p>
</main>
</body>
</html>
`
}
