// The login page of the login gate: one small self-contained HTML form, no scripts, no external
// resources (a strict CSP can forbid everything else).

import { escapeHtml } from '../html.js'

export const SIGN_IN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

export function signInPage (opts: { csrf: string, returnTo: string, providers: Array<{ name: string, title: string }>, problem?: string, signedOut?: boolean }): string {
  const rd = encodeURIComponent(opts.returnTo)
  const providers = opts.providers.length === 0
    ? ''
    : `<div class="providers">\n${opts.providers.map((p) =>
      `<a class="provider" href="/auth/sign-in/${p.name}?rd=${escapeHtml(rd)}">Sign in with ${escapeHtml(p.title)}</a>`).join('\n')}\n<p class="or">or with a ChatGate password</p>\n</div>`
  const notice = opts.problem !== undefined
    ? `<p class="problem" role="alert">${escapeHtml(opts.problem)}</p>`
    : opts.signedOut === true ? '<p class="notice">You are signed out.</p>' : ''
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · ChatGate</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f5f7; display: flex; min-height: 100vh; margin: 0; align-items: center; justify-content: center; }
form { background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: 18rem; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; }
label { display: block; margin: .8rem 0 .3rem; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; }
button { margin-top: 1.2rem; width: 100%; padding: .6rem; }
.problem { color: #a00; } .notice { color: #064; }
a.provider { display: block; text-align: center; padding: .6rem; margin: .5rem 0; border: 1px solid #888; border-radius: 4px; color: #000; text-decoration: none; }
.or { text-align: center; color: #555; margin: 1rem 0 0; }
</style>
</head>
<body>
<form method="post" action="/auth/sign-in">
<h1>Sign in</h1>
${notice}
${providers}
<input type="hidden" name="_csrf" value="${escapeHtml(opts.csrf)}">
<input type="hidden" name="rd" value="${escapeHtml(opts.returnTo)}">
<label for="username">User name</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body>
</html>
`
}
