// One line per operation for the docs' list (the route files carry schemas, not prose). A route
// missing here is still documented, only without a summary.

const SUMMARIES: Record<string, string> = {
  'POST /v1/chat/completions': 'Chat completion (streamed with stream: true)',
  'POST /v1/embeddings': 'Embeddings',
  'GET /v1/models': 'Models the caller may use',
  'GET /v1/models/{model}': 'One model (with ?backend=, an admin asks that Xinference backend)',
  'GET /v1/cluster/auth': "Whether the cluster needs credentials (Xinference's client asks)",
  'POST /v1/models': 'Launch a model on a Xinference backend',
  'DELETE /v1/models/{uid}': 'Terminate a model on a Xinference backend',
  'GET /v1/models/{uid}/progress': 'Launch progress of a model',
  'GET /': 'Liveness probe of Ollama clients ("Ollama is running")',
  'POST /api/chat': 'Chat (NDJSON stream unless stream: false)',
  'POST /api/generate': 'Completion of a prompt',
  'POST /api/embed': 'Embeddings',
  'POST /api/embeddings': 'Embeddings (the older form)',
  'GET /api/version': 'Version (the oldest Ollama in the pool)',
  'GET /api/tags': 'Models the caller may use',
  'GET /api/ps': 'Models loaded now',
  'POST /api/show': 'One model',
  'POST /api/pull': 'Pull a model onto an Ollama backend',
  'POST /api/create': 'Create a model on an Ollama backend',
  'POST /api/copy': 'Copy a model on an Ollama backend',
  'DELETE /api/delete': 'Delete a model from an Ollama backend',
  'POST <biochatter>/v1/chat/completions': 'Chat, as the Next frontend sends it',
  'POST <biochatter>/v1/tokenusage': "Tokens used today (the caller's, or the chat session's)",
  'POST <biochatter>/v1/rag/newdocument': 'Add a document (RAG upstream)',
  'POST <biochatter>/v1/rag/alldocuments': 'List documents (RAG upstream)',
  'DELETE <biochatter>/v1/rag/document': 'Delete a document (RAG upstream)',
  'POST <biochatter>/v1/rag/connectionstatus': 'Whether the RAG upstream answers',
  'POST <biochatter>/v1/kg/connectionstatus': 'Whether the knowledge-graph upstream answers',
  'GET /v1/me/keys': 'My API keys',
  'POST /v1/me/keys': 'Create an API key (shown once)',
  'DELETE /v1/me/keys/{id}': 'Revoke one of my API keys',
  'GET /v1/me/limits': 'My limits, quotas and running chats',
  'GET /v1/me/usage': 'My usage report (JSON or CSV)',
  'GET /v1/me/usage/records': 'My usage records, page by page',
  'POST /auth/login': 'Log in: an access JWT and a refresh token',
  'POST /auth/refresh': 'Trade a refresh token for new tokens',
  'POST /auth/logout': 'End the session of this token (and of a refresh token)',
  'GET /auth/sign-in': 'The sign-in page (HTML)',
  'POST /auth/sign-in': 'Sign in with the form (HTML)',
  'GET /auth/sign-out': 'Sign out the browser',
  'POST /auth/sign-out': 'Sign out the browser',
  'GET /auth/sign-in/{provider}': 'Sign in through an identity provider',
  'GET /auth/callback/{provider}': "The identity provider's redirect back",
  'GET /admin/keys': 'API keys of everyone (?owner=)',
  'POST /admin/keys': 'Create an API key for a user (shown once)',
  'DELETE /admin/keys/{id}': 'Revoke an API key',
  'GET /admin/users': 'Users',
  'POST /admin/users': 'Create a user',
  'GET /admin/users/{name}': 'One user',
  'PATCH /admin/users/{name}': 'Enable, disable, change role or email',
  'PUT /admin/users/{name}/password': "Set a user's password",
  'GET /admin/usage': 'Usage report of everyone (JSON or CSV)',
  'GET /admin/usage/records': 'Usage records of everyone, page by page',
  'GET /admin/tls': 'Certificates: names, expiry, renewal',
  'POST /admin/reload': 'Reload the config file',
  'GET /admin/config': 'The running config (secrets redacted) and its reloads',
  'GET /admin/status': 'Backends, models and certificates now',
  'GET /admin/activity': 'Requests and tokens per minute (?minutes=)',
  'POST /admin/session-token': "A token for the dashboard page (from its browser session)",
  'GET /healthz': 'Liveness',
  'GET /readyz': 'Readiness: a healthy backend (and a certificate with TLS)',
  'GET /metrics': 'Prometheus metrics (admins)',
}

/** The summary of a route, its URL in Fastify's form (`:id`), the BioChatter routes under their prefix. */
export function summaryOf (methods: string[], url: string, biochatterPrefix: string | undefined): string | undefined {
  const path = url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
  const key = biochatterPrefix !== undefined && path.startsWith(`${biochatterPrefix}/`) ? `<biochatter>${path.slice(biochatterPrefix.length)}` : path
  for (const method of methods) {
    const summary = SUMMARIES[`${method} ${key}`]
    if (summary !== undefined) return summary
  }
  return undefined
}
