import { chromium, type Browser } from 'playwright-core'

// Debian's Chromium (never a downloaded browser), headless, with the flags this closed network
// needs: no background connections to Google's services, a fresh profile each time.

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Teardown { teardown: (fn: () => unknown) => void }

export async function launchBrowser (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  })
  t.teardown(() => browser.close())
  return browser
}
