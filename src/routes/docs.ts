import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { describeRoutes, documentBase } from '../docs/openapi.js'

// The OpenAPI description of every route at `docs.path` (Swagger UI there, the document at
// <path>/json and <path>/yaml), generated from the route schemas as the routes are registered.
// Not encapsulated (fastify-plugin), and registered before every route: @fastify/swagger's
// onRoute hook then sees them all.

const DOCS_CSP = "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; form-action 'self'; " +
  "frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'"

export default fp(async function docsRoutes (app: FastifyInstance): Promise<void> {
  const { config } = app.gateway
  if (!config.docs.enabled) return
  const docsPath = config.docs.path

  await app.register(swagger, {
    mode: 'dynamic',
    openapi: documentBase(),
    transform: describeRoutes({ docsPath, biochatterPrefix: config.biochatter.enabled ? config.biochatter.prefix : undefined }),
  })

  // In a scope of its own: only the UI's routes (page, assets, the document) are made public.
  await app.register(async function docsUi (scope) {
    // Before the routes are built: the authentication hook reads `public` from the route config.
    scope.addHook('onRoute', (route) => { route.config = { ...route.config, public: true } })
    await scope.register(swaggerUi, {
      routePrefix: docsPath,
      theme: { title: 'ChatGate API' },
      // (Its validatorUrl stays unset: the UI sends the document to no online validator.)
      uiConfig: { deepLinking: true, displayRequestDuration: true, tryItOutEnabled: false },
      // Scripts only from the gateway (Swagger UI has no inline script); inline styles, which
      // Swagger UI's components set; no upgrade-insecure-requests, which would break a page served
      // over plain HTTP (a lab's loopback, or TLS at a proxy in front).
      staticCSP: DOCS_CSP,
    })
  })
}, { name: 'chatgate-docs' })
