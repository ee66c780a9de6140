// Splitting upstream bytes into whole frames (NDJSON lines, SSE events) without copying more than
// the unfinished tail. Frames keep their original bytes so pass-through stays byte-exact.

const LF = 0x0a
const CR = 0x0d

abstract class Splitter {
  private tail: Buffer | undefined

  /** The new chunk behind what the last one left unfinished. */
  protected joined (chunk: Buffer): Buffer {
    return this.tail === undefined ? chunk : Buffer.concat([this.tail, chunk])
  }

  /** Keeps `buf` from `start` on for the next chunk. */
  protected keepFrom (buf: Buffer, start: number): void {
    this.tail = start < buf.length ? buf.subarray(start) : undefined
  }

  /** Whole frames completed by this chunk, each with its terminator. */
  push (chunk: Buffer): Buffer[] {
    const buf = this.joined(chunk)
    const frames: Buffer[] = []
    let start = 0
    for (let end = this.nextEnd(buf, start); end !== -1; end = this.nextEnd(buf, start)) {
      frames.push(buf.subarray(start, end))
      start = end
    }
    this.keepFrom(buf, start)
    return frames
  }

  /** Bytes left without a terminator when the stream ended. */
  rest (): Buffer | undefined {
    const tail = this.tail
    this.tail = undefined
    return tail
  }

  /** Index just past the next frame's terminator, or -1. */
  protected abstract nextEnd (buf: Buffer, from: number): number
}

export class LineSplitter extends Splitter {
  protected nextEnd (buf: Buffer, from: number): number {
    const i = buf.indexOf(LF, from)
    return i === -1 ? -1 : i + 1
  }

  /** Every whole line completed by this chunk as one buffer, without cutting it into lines. */
  whole (chunk: Buffer): Buffer | undefined {
    const buf = this.joined(chunk)
    const end = buf.lastIndexOf(LF)
    this.keepFrom(buf, end + 1)
    return end === -1 ? undefined : buf.subarray(0, end + 1)
  }
}

/** The last line of whole lines (terminator included). */
export function lastLine (lines: Buffer): Buffer {
  return lines.subarray(lines.lastIndexOf(LF, lines.length - 2) + 1)
}

export function countLines (lines: Buffer): number {
  let n = 0
  for (let i = lines.indexOf(LF); i !== -1; i = lines.indexOf(LF, i + 1)) n += 1
  return n
}

/** SSE events end with a blank line: LF LF, or CR LF CR LF as sse-starlette (Xinference) sends. */
export class SseSplitter extends Splitter {
  protected nextEnd (buf: Buffer, from: number): number {
    for (let i = buf.indexOf(LF, from); i !== -1; i = buf.indexOf(LF, i + 1)) {
      if (buf[i + 1] === LF) return i + 2
      if (buf[i + 1] === CR && buf[i + 2] === LF) return i + 3
    }
    return -1
  }
}

/** The data of one raw SSE event (data lines joined by LF), or undefined for comments and empties. */
export function sseData (frame: Buffer | string): string | undefined {
  const text = typeof frame === 'string' ? frame : frame.toString('utf8')
  let data: string | undefined
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue
    const value = line.charCodeAt(5) === 0x20 ? line.slice(6) : line.slice(5)
    data = data === undefined ? value : `${data}\n${value}`
  }
  return data
}

export function sseFrame (value: unknown): string {
  return `data: ${typeof value === 'string' ? value : JSON.stringify(value)}\n\n`
}

export function ndjsonFrame (value: unknown): string {
  return JSON.stringify(value) + '\n'
}

/** JSON.parse that answers undefined instead of throwing; upstream bytes are not trusted. */
export function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
