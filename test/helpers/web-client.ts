// A browser's part in redirect flows, for tests that need no real browser: follows redirects
// across sites and keeps each site's cookies (name=value only; paths and expiry are not needed
// for these flows).

export interface Hop { url: string, status: number, location?: string, setCookies: string[] }

export class WebClient {
  readonly hops: Hop[] = []
  private readonly jars = new Map<string, Map<string, string>>()

  /** The cookies this client holds for a site (its origin). */
  cookies (origin: string): Map<string, string> {
    let jar = this.jars.get(origin)
    if (jar === undefined) this.jars.set(origin, jar = new Map())
    return jar
  }

  /** One request, cookies sent and kept, redirects not followed. */
  async fetch (url: string, init: RequestInit = {}): Promise<Response> {
    const origin = new URL(url).origin
    const jar = this.cookies(origin)
    const headers = new Headers(init.headers)
    // What a browser's navigation asks for (the login gate sends such requests to the login page).
    if (!headers.has('accept')) headers.set('accept', 'text/html,application/xhtml+xml,*/*;q=0.8')
    if (jar.size > 0) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '))
    const res = await fetch(url, { ...init, headers, redirect: 'manual' })
    const setCookies = res.headers.getSetCookie()
    for (const c of setCookies) {
      const [pair] = c.split(';')
      const [name, ...value] = pair!.split('=')
      // An expiry in the past (a cleared cookie) removes it.
      if (/expires=Thu, 01 Jan 1970/i.test(c) || /max-age=0\b/i.test(c)) jar.delete(name!.trim())
      else jar.set(name!.trim(), value.join('='))
    }
    this.hops.push({ url, status: res.status, ...(res.headers.has('location') && { location: res.headers.get('location')! }), setCookies })
    return res
  }

  /** GET `url` and follow redirects until an answer that is none, or until `stop` says so. */
  async follow (url: string, stop: (url: URL) => boolean = () => false, max = 10): Promise<{ res: Response, url: string }> {
    let current = url
    for (let i = 0; i < max; i++) {
      const res = await this.fetch(current)
      const location = res.headers.get('location')
      if (res.status < 300 || res.status >= 400 || location === null) return { res, url: current }
      const next = new URL(location, current)
      if (stop(next)) return { res, url: current }
      await res.arrayBuffer()
      current = next.href
    }
    throw new Error(`more than ${max} redirects from ${url}`)
  }
}
