import { BlockList, isIP } from 'node:net'
import type { Config } from '../config/schema.js'
import type { Principal } from './jwt.js'

// Callers from trusted networks (backends' own health probes, in-cluster services) may call
// without credentials; they act as one named service user. Off unless CIDRs are configured.

type TrustedNetworks = Config['auth']['trustedNetworks']

/** `10.0.0.0/8`, `fd00::/8`, or a single address: undefined when well-formed, else the problem. */
export function cidrProblem (cidr: string): string | undefined {
  const [address = '', prefix, ...more] = cidr.split('/')
  const family = isIP(address)
  if (family === 0 || more.length > 0) return 'must be an IPv4 or IPv6 address with an optional /prefix, like 10.0.0.0/8'
  if (prefix === undefined) return undefined
  const bits = Number(prefix)
  return /^\d+$/.test(prefix) && bits <= (family === 4 ? 32 : 128) ? undefined : `has a prefix outside 0-${family === 4 ? 32 : 128}`
}

/** The service principal for a request from a trusted network, or undefined. */
export function trustedNetworks (config: TrustedNetworks): ((ip: string) => Principal | undefined) | undefined {
  if (config.cidrs.length === 0) return undefined
  const list = new BlockList()
  for (const cidr of config.cidrs) {
    const [address = '', prefix] = cidr.split('/')
    const type = isIP(address) === 4 ? 'ipv4' : 'ipv6'
    if (prefix === undefined) list.addAddress(address, type)
    else list.addSubnet(address, Number(prefix), type)
  }
  const principal: Principal = { sub: config.user, role: config.role }
  return (ip) => {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    const v4 = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : undefined
    const inside = v4 !== undefined ? list.check(v4, 'ipv4') : list.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6')
    return inside ? principal : undefined
  }
}
