/**
 * Scratch memory for one query at a time: a bump allocator over one buffer that is kept between queries.
 * Restoring a prefix reads its chunks and assembles its state (megabytes each time); fresh buffers for
 * them set off a full garbage collection per query, which costs more than the copying on a Pi-class CPU.
 * The first query that needs scratch makes it `maxBytes` at once; what does not fit is allocated fresh.
 */
export class Arena {
  private buffer = Buffer.alloc(0)
  private used = 0
  private needed = 0

  constructor (readonly maxBytes: number) {}

  /** Starts over: everything handed out before may be overwritten from now on. */
  reset (): void {
    // straight to the cap: growing step by step leaves each old buffer as garbage (a full GC each time),
    // and pages of an uninitialized buffer only take RAM once a query writes them
    if (this.needed > this.buffer.length && this.buffer.length < this.maxBytes) this.buffer = Buffer.allocUnsafe(this.maxBytes)
    this.used = 0
    this.needed = 0
  }

  /** `bytes` of uninitialized memory, valid until the next reset. */
  alloc (bytes: number): Buffer {
    this.needed += bytes
    if (this.used + bytes > this.buffer.length) return Buffer.allocUnsafe(bytes)
    const out = this.buffer.subarray(this.used, this.used + bytes)
    this.used += bytes
    return out
  }

  /** Bytes kept between queries. */
  get size (): number { return this.buffer.length }
}
