// docker/k8s/ checked offline against the Kubernetes API schemas (kubernetes-models: the OpenAPI
// schemas compiled for ajv), for unknown fields with TypeScript's excess-property check against
// the same package's types, for what ties the objects together, and the ConfigMap's chatgate.yaml
// against ChatGate's own validator.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { parseAllDocuments, parse } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service } from 'kubernetes-models/v1/Service'
import { validateConfig } from '../src/config/load.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DIR = join(ROOT, 'docker/k8s')

interface Model { validate: () => void }
// Kind → the model class that validates it and the interface (module, name) that types it.
const KINDS: Record<string, { model: new (data: any) => Model, module: string, type: string }> = {
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1/Service', type: 'IService' },
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, module: 'kubernetes-models/v1/PersistentVolumeClaim', type: 'IPersistentVolumeClaim' },
}

interface Doc { file: string, kind: string, name: string, body: any }
const docs: Doc[] = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort().flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`)
    const body = d.toJS() as any
    return { file, kind: `${body.apiVersion}/${body.kind}`, name: body.metadata?.name, body }
  }))
const one = (kind: string, name: string): any => docs.find((d) => d.kind === kind && d.name === name)?.body

/** The schema's verdict: undefined when valid, else the error message. */
function schemaError (kind: string, body: unknown): string | undefined {
  const entry = KINDS[kind]
  if (entry === undefined) return `no schema for ${kind}`
  try {
    new entry.model(body).validate()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** TypeScript diagnostics for the objects as literals of their API types (catches unknown fields). */
function typeErrors (objects: Array<{ kind: string, body: unknown }>): string[] {
  const file = join(ROOT, 'test/k8s-manifests.typecheck.ts') // never written: served from memory
  const source = objects.map(({ kind, body }, i) =>
    `import type { ${KINDS[kind]!.type} as T${i} } from '${KINDS[kind]!.module}'\nexport const m${i}: T${i} = ${JSON.stringify(body)}\n`).join('')
  const options: ts.CompilerOptions = { strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, types: [] }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, version, ...rest) => name === file ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '))
}

t.test('every manifest is valid against the Kubernetes schemas', async (t) => {
  t.ok(docs.length >= 7, `${docs.length} objects`)
  for (const d of docs) t.equal(schemaError(d.kind, d.body), undefined, `${d.file}: ${d.kind} ${d.name}`)
  t.same(typeErrors(docs), [], 'no unknown or mistyped fields')
})

t.test('a broken manifest is rejected', async (t) => {
  const deployment = structuredClone(one('apps/v1/Deployment', 'chatgate'))
  deployment.spec.replicas = 'three'
  delete deployment.spec.template.spec.containers[0].name
  const error = schemaError('apps/v1/Deployment', deployment)
  t.match(error, /spec\/replicas must be integer/, 'a mistyped value')
  t.match(error, /containers\/0 must have required property name/, 'a missing required field')
  const typo = structuredClone(one('apps/v1/Deployment', 'chatgate'))
  typo.spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem = true
  t.match(typeErrors([{ kind: 'apps/v1/Deployment', body: typo }]).join('\n'), /readOnlyRootFilesytem/, 'a misspelt field')
})

const deployment = one('apps/v1/Deployment', 'chatgate')
const pod = deployment?.spec.template.spec
const container = pod?.containers[0]
const configMap = one('v1/ConfigMap', 'chatgate-config')
const secret = one('v1/Secret', 'chatgate-secrets')
const config = parse(configMap.data['chatgate.yaml'] as string) as unknown
const env = { CHATGATE_JWT_SECRET: 'f'.repeat(64) }

t.test('the Deployment: replicas, probes, resources, non-root and locked down', async (t) => {
  t.ok(deployment.spec.replicas >= 2, 'several replicas')
  // The image's probe script, on the HTTPS port of the config (sending SNI, which ChatGate needs).
  const checked = validateConfig(config, 'configmap', env)
  const probe = (path: string): string[] => ['node', '/app/healthcheck.cjs', `https://127.0.0.1:${checked.server.port}${path}`]
  t.same(container.livenessProbe.exec.command, probe('/healthz'), 'liveness: /healthz')
  t.same(container.startupProbe.exec.command, probe('/healthz'), 'startup: /healthz')
  t.same(container.readinessProbe.exec.command, probe('/readyz'), 'readiness: /readyz')
  t.ok(container.resources.requests.cpu && container.resources.requests.memory && container.resources.limits.memory, 'requests and limits')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.not(pod.securityContext.runAsUser, 0)
  const sc = container.securityContext
  t.equal(sc.readOnlyRootFilesystem, true)
  t.equal(sc.allowPrivilegeEscalation, false)
  t.same(sc.capabilities.drop, ['ALL'])
  // NET_BIND_SERVICE only because ChatGate binds ports below 1024 itself.
  const low = [checked.server.port, checked.tls.httpPort].some((p) => p < 1024)
  t.same(sc.capabilities.add ?? [], low ? ['NET_BIND_SERVICE'] : [])
  t.same(container.ports.map((p: { containerPort: number }) => p.containerPort).sort(), [checked.server.port, checked.tls.httpPort].sort())
})

t.test('the objects refer to each other by the right names', async (t) => {
  const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]))
  const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.mountPath, m.name]))
  t.equal(volumes[mounts['/etc/chatgate']].configMap.name, 'chatgate-config')
  const claim = volumes[mounts['/var/lib/chatgate']].persistentVolumeClaim.claimName
  t.ok(one('v1/PersistentVolumeClaim', claim), `PVC ${claim} exists`)
  t.equal(container.envFrom[0].secretRef.name, 'chatgate-secrets')
  t.ok(secret, 'the Secret exists')
  const labels = pod && deployment.spec.template.metadata.labels
  t.same(deployment.spec.selector.matchLabels, labels)
  const service = one('v1/Service', 'chatgate')
  t.same(service.spec.selector, labels)
  t.same(service.spec.ports.map((p: any) => p.port).sort(), [443, 80])
  const portNames = container.ports.map((p: { name: string }) => p.name)
  for (const p of service.spec.ports) t.ok(portNames.includes(p.targetPort), `Service port ${p.port} → ${p.targetPort}`)
  const redis = one('apps/v1/Deployment', 'chatgate-redis')
  t.same(one('v1/Service', 'chatgate-redis').spec.selector, redis.spec.template.metadata.labels)
})

t.test("the ConfigMap's chatgate.yaml passes ChatGate's validator", async (t) => {
  const checked = validateConfig(config, 'configmap', env)
  t.equal(checked.auth.jwt.secret, env.CHATGATE_JWT_SECRET, 'the JWT secret from the Secret')
  t.equal(checked.store.dir, '/var/lib/chatgate', 'store.dir is the mounted volume')
  const redis = new URL(checked.store.redis!.url)
  t.equal(redis.hostname, 'chatgate-redis', 'Redis at the Redis Service')
  t.equal(Number(redis.port), one('v1/Service', 'chatgate-redis').spec.ports[0].port)
  t.equal(checked.tls.mode, 'acme')
  // Unset, or the Secret's placeholder: ChatGate refuses to start rather than sign with it.
  t.throws(() => validateConfig(config, 'configmap', {}), /CHATGATE_JWT_SECRET is not set/)
  t.throws(() => validateConfig(config, 'configmap', { CHATGATE_JWT_SECRET: secret.stringData.CHATGATE_JWT_SECRET }), /auth\.jwt\.secret/)
})
