import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Gateway } from '../context.js'
import { applyConfig } from './apply.js'
import { ConfigError, parseConfig } from './load.js'
import type { ReloadHistory, ReloadResult, ReloadTrigger } from './reload-result.js'

// Config reload: read the file again, validate it whole, and only then swap it in (apply.ts).
// An invalid file changes nothing: the running config stays and every problem is reported.
// Reloads run one after another, whatever asked for them (SIGHUP, the file, POST /admin/reload).

export class ConfigReloader implements ReloadHistory {
  succeeded = 0
  failed = 0
  last: ReloadResult | undefined
  loadedAt = Date.now()
  /** The text the running config came from: a file event that changed nothing is no reload. */
  private loadedText: string | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private watcher: FSWatcher | undefined
  private debounce: NodeJS.Timeout | undefined

  constructor (readonly file: string | undefined, private readonly gateway: Gateway, private readonly log: FastifyBaseLogger) {
    this.loadedText = this.read()
  }

  private read (): string | undefined {
    if (this.file === undefined) return undefined
    try {
      return readFileSync(this.file, 'utf8')
    } catch {
      return undefined
    }
  }

  /** Reloads now (after any reload still running); the result says what changed or why nothing did. */
  reload (trigger: ReloadTrigger): Promise<ReloadResult> {
    const run = this.queue.then(() => this.run(trigger))
    this.queue = run.catch(() => {})
    return run
  }

  /** A reload nobody waits for (a signal, the file): an unexpected failure is logged, not thrown. */
  reloadInBackground (trigger: ReloadTrigger): void {
    this.reload(trigger).catch((err: unknown) => { this.log.error({ err, trigger }, 'config reload failed') })
  }

  private async run (trigger: ReloadTrigger): Promise<ReloadResult> {
    const at = new Date().toISOString()
    const refused = (problems: string[]): ReloadResult => {
      this.failed += 1
      this.last = { at, trigger, ok: false, problems, applied: [], restartRequired: [] }
      this.log.error({ trigger, file: this.file, problems }, 'config reload refused: the running config stays')
      return this.last
    }
    if (this.file === undefined) return refused(['this gateway was started without a config file'])
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      return refused([`cannot read file: ${(err as Error).message}`])
    }
    let next
    try {
      next = parseConfig(text, this.file)
    } catch (err) {
      if (err instanceof ConfigError) return refused(err.problems)
      throw err
    }
    const { applied, restartRequired, discovered } = applyConfig(this.gateway, this.log, next)
    this.loadedText = text
    this.loadedAt = Date.now()
    this.succeeded += 1
    this.last = { at, trigger, ok: true, problems: [], applied, restartRequired }
    this.log.info({ trigger, file: this.file, applied }, 'config reloaded')
    if (restartRequired.length > 0) this.log.warn({ restartRequired }, 'config reload: these settings take effect on the next restart')
    await discovered
    return this.last
  }

  /**
   * Reloads when the file changes, after `debounceMs` without further changes. The directory is
   * watched, not the file: editors and Kubernetes (ConfigMap volumes) replace the file rather
   * than write it in place.
   */
  watch (debounceMs: number): void {
    if (this.file === undefined) return
    const name = basename(this.file)
    this.watcher = watch(dirname(this.file), (_event, changed) => {
      // Kubernetes swaps its `..data` link; other files in the directory are none of ours.
      if (changed !== null && changed !== name && !changed.startsWith('..')) return
      clearTimeout(this.debounce)
      this.debounce = setTimeout(() => { this.fileChanged() }, debounceMs)
    })
    this.watcher.on('error', (err) => { this.log.warn({ err, file: this.file }, 'config file no longer watched; SIGHUP or POST /admin/reload still reload it') })
  }

  private fileChanged (): void {
    const text = this.read()
    if (text === undefined || text === this.loadedText) return
    this.reloadInBackground('file')
  }

  /** Stops watching; waits for a reload still running. */
  async close (): Promise<void> {
    clearTimeout(this.debounce)
    this.watcher?.close()
    await this.queue
  }
}
