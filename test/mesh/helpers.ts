import '../../src/polyfill.js'
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import pWaitFor from 'p-wait-for'
import { createMeshNode } from '../../src/network/index.js'
import { decodeFrames, streamSource } from '../../src/transfer/index.js'
import type { MeshNode, MeshNodeInit } from '../../src/network/index.js'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export const FINGERPRINT = createHash('sha256').update('promptmesh test model').digest('hex')

export const randomKey = (): string => randomBytes(32).toString('hex')

/** Deterministic payload of `size` bytes for a seed (cheap to regenerate for comparisons). */
export function payload (seed: number, size: number): Uint8Array {
  const out = Buffer.allocUnsafe(size)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out.writeUInt32LE(x, i)
  }
  for (let i = size - (size % 4); i < size; i++) out[i] = i & 0xff
  return out
}

/** A Map-backed stand-in for ChunkStore's API (keys/count/added/removed for the catalog, get for serving). */
export class MemoryStore extends EventEmitter<{ added: [key: string], removed: [key: string] }> {
  readonly chunks = new Map<string, Uint8Array>()
  /** keys whose get() was called, in order (a server's reads) */
  readonly reads: string[] = []
  /** optional hook run at each get(), e.g. to stop the node mid-transfer */
  onGet?: (key: string, index: number) => void
  /** a slow disk (or a slow serving CPU): each get() takes this long */
  getDelayMs = 0

  has (key: string): boolean { return this.chunks.has(key) }
  keys (): IterableIterator<string> { return this.chunks.keys() }
  get count (): number { return this.chunks.size }

  async get (key: string): Promise<Uint8Array | undefined> {
    this.reads.push(key)
    this.onGet?.(key, this.reads.length - 1)
    if (this.getDelayMs > 0) await new Promise(resolve => setTimeout(resolve, this.getDelayMs))
    return this.chunks.get(key)
  }

  put (key: string, bytes: Uint8Array): void {
    const had = this.chunks.has(key)
    this.chunks.set(key, bytes)
    if (!had) this.emit('added', key)
  }

  delete (key: string): void {
    if (this.chunks.delete(key)) this.emit('removed', key)
  }
}

export interface TestNodeOptions extends Partial<MeshNodeInit> {
  store?: MemoryStore
}

export interface TestNode {
  node: MeshNode
  store: MemoryStore
  addr: string
}

/** A node on 127.0.0.1 with mDNS off; `peers` are static peers. */
export async function startNode (options: TestNodeOptions = {}): Promise<TestNode> {
  const store = options.store ?? new MemoryStore()
  const node = await createMeshNode({
    modelFingerprint: FINGERPRINT,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    ...options,
    store
  })
  const addr = node.getMultiaddrs()[0]?.toString()
  if (addr == null) throw new Error('node has no address')
  return { node, store, addr }
}

/** Stops every node, ignoring errors (afterEach). */
export async function stopAll (nodes: TestNode[]): Promise<void> {
  await Promise.all(nodes.map(async (n) => { await n.node.stop().catch(() => {}) }))
  nodes.length = 0
}

export async function collect<T> (source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

export function equalBytes (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a == null || b == null) return false
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/**
 * Polls state until `condition` holds (p-wait-for), failing after `timeoutMs` as a guard against hangs.
 * The deadline is checked in the condition rather than through p-wait-for's timeout option, whose
 * signal collects one abort listener per poll.
 */
export async function waitFor (condition: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  await pWaitFor(() => {
    if (condition()) return true
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`)
    return false
  }, { interval: 20 })
}

/** The frames a raw peer reads off a stream (the tests' own rogue servers and clients). */
export function readFrames (stream: Stream, maxBytes: number, signal?: AbortSignal): AsyncGenerator<Uint8ArrayList, void, undefined> {
  return decodeFrames(maxBytes)(streamSource(stream, { highWaterBytes: 1 << 20, signal }))
}

/** The first frame on a stream (then stops reading), or undefined when it ended first. */
export async function readFirstFrame (stream: Stream, maxBytes: number, signal?: AbortSignal): Promise<Uint8ArrayList | undefined> {
  for await (const frame of readFrames(stream, maxBytes, signal)) return frame
  return undefined
}
