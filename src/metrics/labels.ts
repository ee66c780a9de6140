// Values per label combination, found through one Map per label: no key string is joined (and
// hashed afresh) per lookup, and a label value seen before (a backend's or model's name, a
// surface) has its hash cached in the string already.

type Node = Map<string, unknown>

export class ByLabels<T> {
  private root: Node = new Map()
  private all: T[] = []

  constructor (private readonly make: (labels: readonly string[]) => T) {}

  /** The value of these label values (in labelNames' order, at least one), made on first use. */
  get (labels: readonly string[]): T {
    const last = labels.length - 1
    let node = this.root
    for (let i = 0; i < last; i++) {
      let next = node.get(labels[i]!) as Node | undefined
      if (next === undefined) node.set(labels[i]!, next = new Map())
      node = next
    }
    let value = node.get(labels[last]!) as T | undefined
    if (value === undefined) {
      node.set(labels[last]!, value = this.make(labels))
      this.all.push(value)
    }
    return value
  }

  /** Every value, in the order they were made. */
  values (): readonly T[] {
    return this.all
  }

  clear (): void {
    this.root = new Map()
    this.all = []
  }
}

/** The labels object of these values, in labelNames' order (the order prom-client writes them). */
export function labelObject (labelNames: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (let i = 0; i < labelNames.length; i++) labels[labelNames[i]!] = values[i]!
  return labels
}
