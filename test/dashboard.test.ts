// The admin dashboard in a real browser: Debian's Chromium driven by playwright-core signs in on
// ChatGate's login page, sees the emulated backends, watches a scripted workload (chats through
// the official `openai` client) arrive in the activity chart and the usage table, creates an API
// key and revokes it, and the revoked key is refused.
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import type { Page } from 'playwright-core'
import { OllamaEmulator } from './emulators/ollama.js'
import { XinferenceEmulator } from './emulators/xinference.js'
import { launchBrowser } from './helpers/browser.js'
import { startGateway, type Gateway } from './helpers/gateway.js'

const WORKLOAD = 7

async function setup (t: Test): Promise<{ gw: Gateway, o: OllamaEmulator }> {
  const o = await OllamaEmulator.start({ models: ['llama3.2:latest', 'qwen3:8b'], loaded: ['llama3.2:latest'] })
  const x = await XinferenceEmulator.start({ models: [{ uid: 'qwen-a1b2', name: 'qwen2.5-instruct' }] })
  t.teardown(() => Promise.all([o.close(), x.close()]))
  const gw = await startGateway(t, [
    { name: 'gpu-ollama', type: 'ollama', url: o.url, maxConcurrent: 2 },
    { name: 'gpu-xinference', type: 'xinference', url: x.url },
  ])
  await gw.app.gateway.users.add({ name: 'ada', password: 'ada-password', role: 'admin' })
  await gw.app.gateway.users.add({ name: 'alice', password: 'alice-password' })
  return { gw, o }
}

/** Opens `path` with no session: the login page comes first, then the page asked for. */
async function signIn (t: Test, page: Page, gw: Gateway, path: string, name: string, password: string): Promise<void> {
  await page.goto(`${gw.url}${path}`)
  const login = new URL(page.url())
  t.equal(login.pathname, '/auth/sign-in', `${path} without a session: the login page`)
  t.equal(login.searchParams.get('rd'), path)
  await page.fill('#username', name)
  await page.fill('#password', password)
  await page.click('button[type=submit]')
  await page.waitForURL(`${gw.url}${path}`)
}

/**
 * Fails the test on any script error in the page, and on any of the dashboard's files not
 * loading. (Refused API calls are logged by Chromium too; the tests that cause them expect them.)
 */
function watchErrors (t: Test, page: Page): void {
  page.on('pageerror', (err) => t.fail(`page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) t.fail(`console error: ${msg.text()}`) })
  page.on('response', (res) => {
    if (new URL(res.url()).pathname.startsWith('/admin/assets/') && res.status() >= 400) t.fail(`${res.url()}: ${res.status()}`)
  })
  page.on('requestfailed', (req) => t.fail(`${req.url()}: ${req.failure()?.errorText ?? 'failed'}`))
}

t.test('an admin signs in, sees the backends and the workload in the chart, creates a key and revokes it', async (t) => {
  const { gw, o } = await setup(t)
  const browser = await launchBrowser(t)
  const page = await (await browser.newContext()).newPage()
  watchErrors(t, page)
  await signIn(t, page, gw, '/admin', 'ada', 'ada-password')

  // Backends, with health, slots and models.
  await page.locator('[data-testid=backend-row][data-name=gpu-xinference]').waitFor()
  t.same(await page.getByTestId('backend-name').allTextContents(), ['gpu-ollama', 'gpu-xinference'])
  t.same(await page.getByTestId('health').allTextContents(), ['up', 'up'])
  t.same(await page.getByTestId('slots').allTextContents(), ['0 / 2', '0 / 1'])
  const ollamaRow = page.locator('[data-testid=backend-row][data-name=gpu-ollama]')
  t.same(await ollamaRow.locator('ul.models li.loaded').allTextContents(), ['● llama3.2:latest'], 'the loaded model is marked')
  t.same(await ollamaRow.locator('ul.models li:not(.loaded)').allTextContents(), ['○ qwen3:8b'])
  t.equal(await page.getByTestId('signed-in-as').textContent(), 'signed in as ada')
  await page.getByTestId('activity-total').getByText('0 requests in the last 60 min').waitFor()
  t.match(await page.getByTestId('tls-mode').textContent(), /TLS is off/)
  t.match(await page.getByTestId('config-json').textContent(), /"name": "gpu-ollama"/)
  // The reload button: this gateway has no file to read, and the page says so.
  await page.getByTestId('reload').click()
  await page.getByTestId('reload-result').getByText(/422: config not reloaded.*started without a config file/).waitFor()
  await page.getByTestId('reload-summary').getByText(/refused; the running config stays/).waitFor()

  // A key for alice, made in the page and shown once.
  await page.locator('#key-form select[name=owner]').selectOption('alice')
  await page.fill('#key-form input[name=name]', 'workload')
  await page.click('#key-form button[type=submit]')
  await page.getByTestId('new-key-secret').waitFor()
  const key = (await page.getByTestId('new-key-secret').textContent())!
  t.match(key, /^cg_[A-Za-z0-9_-]{43}$/)
  const keyRow = page.locator('[data-testid=key-row][data-name=workload]')
  await keyRow.waitFor()
  t.equal(await keyRow.getByTestId('key-state').textContent(), 'active')

  // The scripted workload through the official client with that key, streamed and not.
  o.mode = { firstTokenDelayMs: 25 }
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
  for (let i = 0; i < WORKLOAD; i++) {
    const messages = [{ role: 'user' as const, content: `question ${i}` }]
    if (i % 2 === 0) {
      const stream = await openai.chat.completions.create({ model: 'llama3.2', messages, stream: true })
      for await (const _chunk of stream) { /* read to the end */ }
    } else {
      const answer = await openai.chat.completions.create({ model: 'llama3.2', messages })
      t.ok(answer.choices[0]?.message.content, `chat ${i} answered`)
    }
  }
  await page.getByTestId('refresh').click()
  await page.getByTestId('activity-total').getByText(`${WORKLOAD} requests in the last 60 min`).waitFor()
  const bars = await page.locator('[data-testid=requests-chart] rect.bar-mark').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('data-value'))))
  t.equal(bars.length, 60, 'a bar per minute')
  t.equal(bars.reduce((a, b) => a + b, 0), WORKLOAD, 'the bars add up to the workload')
  t.ok(await page.locator('[data-testid=ttft-chart] circle.point-mark').count() > 0, 'time to first token is drawn')
  const aliceUsage = page.locator('[data-testid=usage-by-user] [data-testid=usage-row][data-name=alice]')
  t.equal(await aliceUsage.getByTestId('requests').textContent(), String(WORKLOAD), 'the usage table counts them for alice')
  t.equal(await page.locator('[data-testid=usage-by-model] [data-testid=usage-row]').getAttribute('data-name'), 'llama3.2')

  // Revoked in the page (two clicks: ask, then do), refused at once.
  await keyRow.getByTestId('revoke').click()
  await keyRow.getByTestId('revoke').getByText('Click again to revoke').waitFor()
  await keyRow.getByTestId('revoke').click()
  await keyRow.getByTestId('key-state').getByText(/^revoked /).waitFor()
  t.match(await page.getByTestId('keys-note').textContent(), /Key workload of alice revoked/)
  const refused = await openai.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'still there?' }] }).then(() => undefined, (err: unknown) => err)
  t.ok(refused instanceof OpenAI.AuthenticationError, 'the revoked key is refused')
  t.equal((refused as InstanceType<typeof OpenAI.AuthenticationError>).status, 401)
  t.equal(gw.app.gateway.keys.list('alice')[0]!.revokedAt !== undefined, true, 'revoked in the store')
})

t.test('users made and disabled in the page; errors of the API are shown; signing out stops the page', async (t) => {
  const { gw } = await setup(t)
  const browser = await launchBrowser(t)
  const context = await browser.newContext()
  const page = await context.newPage()
  watchErrors(t, page)
  await signIn(t, page, gw, '/admin', 'ada', 'ada-password')
  await page.locator('[data-testid=user-row][data-name=alice]').waitFor()

  await page.fill('#user-form input[name=name]', 'bob')
  await page.fill('#user-form input[name=password]', 'bob-password')
  await page.fill('#user-form input[name=email]', 'bob@lab.example')
  await page.click('#user-form button[type=submit]')
  const bob = page.locator('[data-testid=user-row][data-name=bob]')
  await bob.waitFor()
  t.equal(gw.app.gateway.users.get('bob')?.email, 'bob@lab.example', 'bob is in the store')
  await bob.getByTestId('disable-user').click()
  await bob.getByTestId('enable-user').waitFor()
  t.equal(gw.app.gateway.users.get('bob')?.enabled, false, 'and disabled')

  // The API's own words reach the page: a name taken already.
  await page.fill('#user-form input[name=name]', 'bob')
  await page.fill('#user-form input[name=password]', 'bob-password')
  await page.click('#user-form button[type=submit]')
  await page.getByTestId('users-error').getByText(/^409: .*bob/).waitFor()

  // A custom period the API refuses: its message, not silence.
  await page.locator('#usage-form select[name=period]').selectOption('custom')
  await page.fill('#usage-form input[name=from]', '2025-06-10')
  await page.fill('#usage-form input[name=to]', '2025-06-01')
  await page.click('#usage-form button[type=submit]')
  await page.getByTestId('usage-error').getByText(/^400: /).waitFor()

  // Signed out elsewhere (another tab): the next refresh says so and links to the login page.
  const out = await context.request.post(`${gw.url}/auth/sign-out`, { maxRedirects: 0 })
  t.equal(out.status(), 303)
  await page.getByTestId('refresh').click()
  await page.getByTestId('banner').getByText(/session has ended/).waitFor()
  t.equal(await page.getByTestId('banner').getByRole('link').getAttribute('href'), '/auth/sign-in?rd=%2Fadmin')
})

t.test('a signed-in user who is not an admin gets the 403 page', async (t) => {
  const { gw } = await setup(t)
  const browser = await launchBrowser(t)
  const page = await (await browser.newContext()).newPage()
  await signIn(t, page, gw, '/admin', 'alice', 'alice-password')
  await page.getByTestId('refused').waitFor()
  t.match(await page.getByTestId('refused').textContent(), /dashboard is for admins\. You are signed in as alice/)
  const again = await page.goto(`${gw.url}/admin`)
  t.equal(again?.status(), 403)
  t.equal(await page.locator('script').count(), 0, 'none of the dashboard is sent')
})
