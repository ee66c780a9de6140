// Health probe without curl: `node /app/healthcheck.cjs [URL]` exits 0 when URL (default
// $CHATGATE_HEALTH_URL) answers 200. The image's HEALTHCHECK and the Kubernetes probes run it.
// HTTPS: the certificate is not checked (the question is whether ChatGate answers, on loopback),
// and a server name is always sent: ChatGate picks its certificate by SNI and refuses clients
// that send none, as any client of an IP address (the kubelet's own HTTPS probes included).
'use strict'
const { isIP } = require('node:net')

const url = new URL(process.argv[2] ?? process.env.CHATGATE_HEALTH_URL ?? 'http://127.0.0.1:8080/healthz')
const host = url.hostname.replace(/^\[|\]$/g, '')
const client = require(url.protocol === 'https:' ? 'node:https' : 'node:http')
const options = { rejectUnauthorized: false, servername: isIP(host) ? 'localhost' : host, timeout: 4000, agent: false }
const request = client.get(url, options, (res) => {
  res.resume()
  process.exit(res.statusCode === 200 ? 0 : 1)
})
request.on('timeout', () => request.destroy(new Error(`no answer from ${url} within 4 s`)))
request.on('error', (err) => {
  console.error(err.message)
  process.exit(1)
})
