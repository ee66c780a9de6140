const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }

/** `90s`, `15m`, `1h`, `7d` → seconds; undefined when malformed. */
export function parseTtl (ttl: string): number | undefined {
  const match = /^([0-9]+)([smhd])$/.exec(ttl)
  if (match === null) return undefined
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2]!]!
  return seconds > 0 ? seconds : undefined
}
