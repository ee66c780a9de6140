import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Hand-made JWTs, including the malicious kinds a gateway must refuse. */
export function hmacJwt (payload: object, secret: string | Buffer, alg = 'HS256'): string {
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(payload)}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}

export function unsignedJwt (payload: object): string {
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`
}

export function rsaJwt (payload: object, key: KeyObject): string {
  const head = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(payload)}`
  return `${head}.${cryptoSign('sha256', Buffer.from(head), key).toString('base64url')}`
}

export const inOneHour = (): number => Math.floor(Date.now() / 1000) + 3600
