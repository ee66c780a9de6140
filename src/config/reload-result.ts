// What a config reload did: read by POST /admin/reload, the dashboard and the metrics.

/** What asked for the reload: SIGHUP, a change of the file, or POST /admin/reload. */
export type ReloadTrigger = 'signal' | 'file' | 'api'

export interface ReloadResult {
  /** When it ran (ISO 8601). */
  at: string
  trigger: ReloadTrigger
  /** False: the file was invalid (or unreadable) and the running config stays. */
  ok: boolean
  /** Every problem of an invalid file, by path (`backends[1].url: …`); empty when ok. */
  problems: string[]
  /** The parts of the config that changed and now apply (`backends`, `limits`, `auth.modelAccess` …). */
  applied: string[]
  /** Settings that changed in the file but take effect only on a restart (`server.port` …). */
  restartRequired: string[]
}

/** Reloads so far, for the metrics and the dashboard. */
export interface ReloadHistory {
  /** The config file reloads read (none when the gateway was built from an object, as in tests). */
  readonly file: string | undefined
  readonly succeeded: number
  readonly failed: number
  /** The latest reload, if any. */
  readonly last: ReloadResult | undefined
  /** When the running config was loaded: start or the last successful reload (ms since the epoch). */
  readonly loadedAt: number
}
