// Many requests, one Redis command: items added while the event loop handles one batch of I/O
// are sent together when it is done with it (setImmediate), as one script call whose answer is
// split up again. Under load a command per request cost more CPU than the rest of the request;
// with no load a batch is one item and waits for nothing.

export interface BatchCall<Item> {
  keys: string[]
  args: Array<string | number>
  /** How many answer values each item takes, in order. */
  width: (item: Item) => number
}

export class TickBatch<Item, Answer> {
  private pending: Array<{ item: Item, resolve: (answer: Answer) => void, reject: (err: unknown) => void }> = []

  constructor (
    private readonly build: (items: Item[]) => BatchCall<Item>,
    private readonly send: (keys: string[], args: Array<string | number>) => Promise<number[]>,
    private readonly read: (item: Item, values: number[]) => Answer,
  ) {}

  add (item: Item): Promise<Answer> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => { this.flush() })
      this.pending.push({ item, resolve, reject })
    })
  }

  private flush (): void {
    const batch = this.pending
    this.pending = []
    const items = batch.map((p) => p.item)
    const call = this.build(items)
    this.send(call.keys, call.args).then((values) => {
      let at = 0
      for (const p of batch) {
        const width = call.width(p.item)
        p.resolve(this.read(p.item, values.slice(at, at + width)))
        at += width
      }
    }, (err: unknown) => {
      for (const p of batch) p.reject(err)
    })
  }
}
