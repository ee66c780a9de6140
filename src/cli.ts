#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { hashPassword } from './auth/passwords.js'
import { parseTtl } from './auth/ttl.js'
import { ConfigError, configPathFrom, loadConfig } from './config/load.js'
import { BIOCHATTER_HELP, BioChatterUsageError, biochatterModels } from './cli-biochatter.js'
import { KEYS_HELP, KeysUsageError, runKeys } from './cli-keys.js'
import { USERS_HELP, UsersUsageError, runUsers } from './cli-users.js'
import { GatewayError } from './errors.js'
import { manualCertificateProblems } from './tls/material.js'

const HELP: Record<string, string> = {
  main: `chatgate — a self-hosted chat gateway for Ollama, Xinference and OpenAI-compatible backends

Usage: chatgate <command> [options]

Commands:
  serve           start the gateway
  check-config    validate a config file and report every problem
  hash-password   read a password from stdin and print its scrypt hash (for auth.users)
  token           print a JWT signed with the configured key
  keys            create, list and revoke API keys
  users           add, list, enable, disable users and reset their passwords
  biochatter-models  print the LLMModels block for the BioChatter Next frontend's config

Run "chatgate <command> --help" for a command's options.`,
  serve: `Usage: chatgate serve [--config FILE]

Starts the gateway. The config file is FILE, else $CHATGATE_CONFIG, else config/chatgate.yaml.`,
  'check-config': `Usage: chatgate check-config [--config FILE]

Validates the config file (and, in tls.mode manual, the certificate files it names); prints every\nproblem by its path and exits 1 if there is any.`,
  'hash-password': `Usage: echo -n 'secret' | chatgate hash-password

Reads a password from standard input (one trailing newline is dropped) and prints a scrypt hash
to paste into auth.users[].passwordHash.`,
  token: `Usage: chatgate token --sub NAME --role user|admin [--ttl 1h] [--config FILE]

Prints a JWT for NAME with the given role, signed with the key the config names (the generated
secret under store.dir when none is configured). TTL: a number and s, m, h or d.`,
  keys: KEYS_HELP,
  users: USERS_HELP,
  'biochatter-models': BIOCHATTER_HELP,
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  owner: { type: 'string' },
  name: { type: 'string' },
  models: { type: 'string' },
  json: { type: 'boolean' },
  sub: { type: 'string' },
  role: { type: 'string' },
  ttl: { type: 'string' },
  email: { type: 'string' },
  rpm: { type: 'string' },
  'tokens-per-day': { type: 'string' },
  'tokens-per-month': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

class UsageError extends Error {}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

async function printToken (configFile: string, sub: string | undefined, role: string | undefined, ttlText: string): Promise<void> {
  if (sub === undefined || sub === '') throw new UsageError('--sub NAME is required')
  if (role !== 'user' && role !== 'admin') throw new UsageError('--role must be user or admin')
  const ttl = parseTtl(ttlText)
  if (ttl === undefined) throw new UsageError(`--ttl "${ttlText}" is not a duration like 30m, 1h or 7d`)
  const config = loadConfig(configFile)
  // The signing key comes from the same code the server uses, without starting it.
  const { default: Fastify } = await import('fastify')
  const { default: jwtAuth } = await import('./auth/jwt.js')
  const app = Fastify({ logger: false })
  await app.register(jwtAuth, { config })
  await app.ready()
  process.stdout.write(app.issueToken(sub, role, ttl).token + '\n')
  await app.close()
}

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP.main + '\n')
    return command === undefined ? 1 : 0
  }
  if (!(command in HELP) || command === 'main') throw new UsageError(`unknown command "${command}"\n\n${HELP.main}`)
  const { values, positionals } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: command === 'keys' || command === 'users' })
  if (values.help === true) {
    process.stdout.write(HELP[command] + '\n')
    return 0
  }
  const configFile = configPathFrom(values.config)
  switch (command) {
    case 'serve':
      // Loaded only here: the whole gateway is not needed to hash a password or make a key.
      const { serve } = await import('./server.js')
      await serve(configFile)
      return -1 // keeps running
    case 'check-config': {
      const config = loadConfig(configFile)
      // Certificate files are read now too, so a bad pair is found before a restart.
      const problems = manualCertificateProblems(config)
      if (problems.length > 0) throw new ConfigError(configFile, problems)
      process.stdout.write(`${configFile}: OK (${config.backends.length} backend(s), ${config.auth.users.length} user(s))\n`)
      return 0
    }
    case 'hash-password': {
      const password = await readStdin()
      if (password === '') throw new UsageError('no password on standard input')
      process.stdout.write(await hashPassword(password) + '\n')
      return 0
    }
    case 'keys':
      process.stdout.write(runKeys(configFile, positionals, values) + '\n')
      return 0
    case 'users':
      process.stdout.write(await runUsers(configFile, positionals, values, readStdin) + '\n')
      return 0
    case 'biochatter-models': {
      const { yaml, unreachable } = await biochatterModels(configFile, values.role)
      for (const backend of unreachable) process.stderr.write(`backend ${backend} did not answer: its models are not listed\n`)
      process.stdout.write(yaml)
      return 0
    }
    default:
      await printToken(configFile, values.sub, values.role, values.ttl ?? '1h')
      return 0
  }
}

const packageVersion = (): string => (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** Errors whose message is all the user needs (no stack): bad usage, and the store refusing (unknown user, duplicate name). */
const isUserMistake = (err: unknown): boolean => err instanceof UsageError || err instanceof BioChatterUsageError || err instanceof KeysUsageError || err instanceof UsersUsageError ||
  err instanceof GatewayError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`)
  else if (isUserMistake(err)) process.stderr.write(`chatgate ${packageVersion()}: ${(err as Error).message}\n`)
  else process.stderr.write(`chatgate: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = err instanceof ConfigError ? 2 : 1
})
