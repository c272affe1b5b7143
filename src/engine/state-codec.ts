/**
 * Codec for llama.cpp sequence-state files (`llama_state_seq_save_file`, LLAMA_STATE_SEQ_VERSION 3) and
 * for the per-block KV chunks promptmesh cuts out of them.
 *
 * Why chunks: sliding-window models (Gemma-3) keep only the last `window` positions of their SWA layers
 * in a saved state, so "save the whole prompt, truncate on reuse" is silently wrong. Instead every block
 * of B tokens is cut out of a state saved while it was still inside the window, and a loadable state for
 * any prefix of blocks is assembled from chunks (local or fetched). Cell order in the cache is not
 * position order (SWA cells are reused), so cells are located by position.
 *
 * Layout (little-endian; see llama.cpp src/llama-context.cpp and src/llama-kv-cache.cpp):
 *   u32 magic 'ggsq', u32 version, u32 n_tokens, i32 tokens[n]
 *   per KV cache (1, or 2 for iSWA: base then SWA; the count is not stored, read to the end):
 *     u32 n_stream; per stream: u32 cell_count C; if C > 0:
 *       C x { i32 pos, u32 n_seq_id, i32 seq_id[n_seq_id] }
 *       u32 v_trans, u32 n_layer
 *       n_layer x { i32 k_type, u64 k_row_bytes, C rows }
 *       v_trans = 0: n_layer x { i32 v_type, u64 v_row_bytes, C rows }
 *       v_trans = 1: n_layer x { i32 v_type, u32 v_el_bytes, u32 n_embd_v, n_embd_v x (C x v_el_bytes) }
 *
 * Everything is validated before it is sliced: a truncated state aborts the whole process inside
 * llama.cpp, and gaps or reordered positions load silently and give wrong output.
 */
import { ChunkMismatchError, InvalidStateError, UnsupportedStateLayoutError } from './errors.js'

export const STATE_MAGIC = 0x67677371 // 'ggsq'
export const STATE_VERSION = 3
export const CHUNK_MAGIC = 0x424b4d50 // 'PMKB'
export const CHUNK_FORMAT_VERSION = 1

/** Sanity bounds: a layout outside them is not a state this codec knows. */
const MAX_LAYERS = 1024
const MAX_ROW_BYTES = 1 << 24
const MAX_EMBD = 1 << 20
const MAX_SEQ_IDS_PER_CELL = 64
const MAX_CACHES = 8
const MAX_POSITION = 1 << 24
/** ggml type ids that may hold KV data (F32, F16, quantized, BF16). */
const MAX_GGML_TYPE = 40

export interface LayerLayout {
  kType: number
  kRowBytes: number
  vType: number
  /** bytes of one V row (v_trans = 0) or of one element (v_trans = 1) */
  vUnitBytes: number
  /** n_embd_v when v_trans = 1, else 0 */
  nEmbdV: number
}

export interface CacheLayout {
  vTrans: boolean
  layers: LayerLayout[]
}

/** What must match for chunks to be assembled together and loaded into a context. */
export interface StateLayout {
  stateVersion: number
  caches: CacheLayout[]
}

interface ParsedLayer extends LayerLayout {
  kOffset: number
  vOffset: number
}

interface ParsedCache {
  cellCount: number
  positions: Int32Array
  metaOffsets: Uint32Array
  metaEnd: number
  vTrans: boolean
  layers: ParsedLayer[]
}

export interface ParsedState {
  version: number
  tokens: Int32Array
  caches: ParsedCache[]
  /** the raw bytes the offsets refer to */
  bytes: Buffer
}

class Reader {
  offset: number
  constructor (readonly buf: Buffer, offset = 0) { this.offset = offset }

  need (n: number, what: string): void {
    if (n < 0 || this.offset + n > this.buf.length) {
      throw new InvalidStateError(`state truncated while reading ${what} at byte ${this.offset}`)
    }
  }

  u32 (what: string): number { this.need(4, what); const v = this.buf.readUInt32LE(this.offset); this.offset += 4; return v }
  i32 (what: string): number { this.need(4, what); const v = this.buf.readInt32LE(this.offset); this.offset += 4; return v }
  u64 (what: string): number {
    this.need(8, what)
    const v = this.buf.readBigUInt64LE(this.offset)
    this.offset += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnsupportedStateLayoutError(`${what} too large`)
    return Number(v)
  }

  skip (n: number, what: string): number { this.need(n, what); const at = this.offset; this.offset += n; return at }
}

function checkType (type: number, what: string): void {
  if (!Number.isInteger(type) || type < 0 || type > MAX_GGML_TYPE) throw new UnsupportedStateLayoutError(`unknown ${what} ggml type ${type}`)
}

function checkRange (value: number, min: number, max: number, what: string): void {
  if (value < min || value > max) throw new UnsupportedStateLayoutError(`${what} ${value} outside [${min}, ${max}]`)
}

/** Parses and fully validates a sequence-state file's bytes. Never copies tensor data. */
export function parseState (bytes: Buffer): ParsedState {
  const r = new Reader(bytes)
  const magic = r.u32('magic')
  if (magic !== STATE_MAGIC) throw new UnsupportedStateLayoutError(`not a sequence state (magic 0x${magic.toString(16)})`)
  const version = r.u32('version')
  if (version !== STATE_VERSION) throw new UnsupportedStateLayoutError(`sequence state version ${version} is not supported (want ${STATE_VERSION})`)
  const nTokens = r.u32('token count')
  const tokOffset = r.skip(nTokens * 4, 'tokens')
  const tokens = new Int32Array(nTokens)
  for (let i = 0; i < nTokens; i++) tokens[i] = bytes.readInt32LE(tokOffset + i * 4)

  const caches: ParsedCache[] = []
  while (r.offset < bytes.length) {
    if (caches.length >= MAX_CACHES) throw new UnsupportedStateLayoutError(`more than ${MAX_CACHES} KV caches`)
    caches.push(parseCache(r))
  }
  if (caches.length === 0) throw new InvalidStateError('state holds no KV cache')
  return { version, tokens, caches, bytes }
}

function parseCache (r: Reader): ParsedCache {
  const nStream = r.u32('n_stream')
  if (nStream !== 1) throw new UnsupportedStateLayoutError(`n_stream ${nStream} (only single-stream contexts are supported)`)
  const cellCount = r.u32('cell_count')
  // check the bytes exist before allocating per-cell arrays (a forged count must not reserve gigabytes)
  r.need(cellCount * 8, 'cell metadata')
  const positions = new Int32Array(cellCount)
  const metaOffsets = new Uint32Array(cellCount)
  if (cellCount === 0) return { cellCount, positions, metaOffsets, metaEnd: r.offset, vTrans: false, layers: [] }
  for (let i = 0; i < cellCount; i++) {
    metaOffsets[i] = r.offset
    positions[i] = r.i32('cell pos')
    const nSeq = r.u32('cell n_seq_id')
    checkRange(nSeq, 0, MAX_SEQ_IDS_PER_CELL, 'n_seq_id')
    r.skip(nSeq * 4, 'cell seq ids')
  }
  const metaEnd = r.offset
  const vTransRaw = r.u32('v_trans')
  if (vTransRaw > 1) throw new UnsupportedStateLayoutError(`v_trans ${vTransRaw}`)
  const nLayer = r.u32('n_layer')
  checkRange(nLayer, 1, MAX_LAYERS, 'n_layer')
  const layers: ParsedLayer[] = []
  for (let l = 0; l < nLayer; l++) {
    const kType = r.i32('k_type')
    checkType(kType, 'K')
    const kRowBytes = r.u64('k_row_bytes')
    checkRange(kRowBytes, 1, MAX_ROW_BYTES, 'k_row_bytes')
    const kOffset = r.skip(kRowBytes * cellCount, `K rows of layer ${l}`)
    layers.push({ kType, kRowBytes, kOffset, vType: 0, vUnitBytes: 0, nEmbdV: 0, vOffset: 0 })
  }
  for (const layer of layers) {
    layer.vType = r.i32('v_type')
    checkType(layer.vType, 'V')
    if (vTransRaw === 0) {
      layer.vUnitBytes = r.u64('v_row_bytes')
      checkRange(layer.vUnitBytes, 1, MAX_ROW_BYTES, 'v_row_bytes')
      layer.vOffset = r.skip(layer.vUnitBytes * cellCount, 'V rows')
    } else {
      layer.vUnitBytes = r.u32('v_el_bytes')
      checkRange(layer.vUnitBytes, 1, 16, 'v_el_bytes')
      layer.nEmbdV = r.u32('n_embd_v')
      checkRange(layer.nEmbdV, 1, MAX_EMBD, 'n_embd_v')
      layer.vOffset = r.skip(layer.nEmbdV * cellCount * layer.vUnitBytes, 'transposed V')
    }
  }
  return { cellCount, positions, metaOffsets, metaEnd, vTrans: vTransRaw === 1, layers }
}

export function layoutOf (state: ParsedState): StateLayout {
  return {
    stateVersion: state.version,
    caches: state.caches.map(c => ({
      vTrans: c.vTrans,
      layers: c.layers.map(({ kType, kRowBytes, vType, vUnitBytes, nEmbdV }) => ({ kType, kRowBytes, vType, vUnitBytes, nEmbdV }))
    }))
  }
}

export function sameLayout (a: StateLayout, b: StateLayout): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** Bytes one cell (one token position) takes in a chunk of this layout, metadata excluded. */
function cellDataBytes (layout: StateLayout): number {
  let n = 0
  for (const c of layout.caches) {
    for (const l of c.layers) n += l.kRowBytes + (c.vTrans ? l.vUnitBytes * l.nEmbdV : l.vUnitBytes)
  }
  return n
}

/**
 * Cuts block `blockIndex` (positions [i*B, (i+1)*B)) out of a parsed state. Returns undefined when some
 * cache does not hold every position of the block (e.g. SWA cells already outside the window).
 */
export function cutBlock (state: ParsedState, blockIndex: number, blockTokens: number): Buffer | undefined {
  return cutCells(state, blockIndex * blockTokens, blockTokens)
}

/**
 * Cuts positions [first, first + count) out of a parsed state: a block, or a prompt's tail (the part
 * of its last block before its last token, shorter than a block). Undefined when a cache lacks one.
 */
export function cutCells (state: ParsedState, first: number, blockTokens: number): Buffer | undefined {
  if (blockTokens < 1 || first + blockTokens > state.tokens.length) return undefined
  const cells: number[][] = []
  for (const cache of state.caches) {
    if (cache.cellCount === 0) return undefined
    const byPos = new Map<number, number>()
    for (let i = 0; i < cache.cellCount; i++) {
      const pos = cache.positions[i] as number
      if (pos >= first && pos < first + blockTokens) {
        if (byPos.has(pos)) throw new InvalidStateError(`position ${pos} appears twice in one cache`)
        byPos.set(pos, i)
      }
    }
    if (byPos.size !== blockTokens) return undefined
    const idx: number[] = []
    for (let p = first; p < first + blockTokens; p++) idx.push(byPos.get(p) as number)
    cells.push(idx)
  }

  // one allocation, written in place: a prompt cuts megabytes of chunks, and garbage is what costs on a
  // Pi-class CPU quota (each 64 MB of buffers allocated sets off a full garbage collection)
  const src = state.bytes
  const metas = state.caches.map((cache, ci) => (cells[ci] as number[]).map(i => src.subarray(cache.metaOffsets[i], i + 1 < cache.cellCount ? cache.metaOffsets[i + 1] : cache.metaEnd)))
  let size = 24 + blockTokens * 4
  state.caches.forEach((cache, ci) => {
    size += 12 + cache.layers.length * 24
    for (const m of metas[ci] as Buffer[]) size += m.length
    for (const l of cache.layers) size += blockTokens * (l.kRowBytes + (cache.vTrans ? l.vUnitBytes * l.nEmbdV : l.vUnitBytes))
  })
  const out = Buffer.allocUnsafe(size)
  let w = 0
  const u32 = (v: number): void => { w = out.writeUInt32LE(v, w) }
  const i32 = (v: number): void => { w = out.writeInt32LE(v, w) }
  u32(CHUNK_MAGIC)
  u32(CHUNK_FORMAT_VERSION)
  u32(state.version)
  u32(blockTokens)
  u32(first)
  u32(state.caches.length)
  for (let t = 0; t < blockTokens; t++) i32(state.tokens[first + t] as number)

  state.caches.forEach((cache, ci) => {
    const idx = cells[ci] as number[]
    const meta = metas[ci] as Buffer[]
    u32(cache.vTrans ? 1 : 0)
    u32(cache.layers.length)
    u32(meta.reduce((n, b) => n + b.length, 0))
    for (const l of cache.layers) {
      i32(l.kType)
      u32(l.kRowBytes)
      i32(l.vType)
      u32(l.vUnitBytes)
      u32(l.nEmbdV)
      u32(0) // reserved
    }
    for (const m of meta) w += m.copy(out, w)
    const contiguous = idx.every((v, k) => v === (idx[0] as number) + k)
    for (const l of cache.layers) w = copyRows(src, l.kOffset, l.kRowBytes, idx, contiguous, out, w)
    for (const l of cache.layers) {
      if (!cache.vTrans) {
        w = copyRows(src, l.vOffset, l.vUnitBytes, idx, contiguous, out, w)
        continue
      }
      // transposed V: row j holds every cell's element j; take this block's cells from each row
      const rowBytes = cache.cellCount * l.vUnitBytes
      for (let j = 0; j < l.nEmbdV; j++) w = copyRows(src, l.vOffset + j * rowBytes, l.vUnitBytes, idx, contiguous, out, w)
    }
  })
  if (w !== size) throw new Error(`cut ${w} bytes, sized ${size}`)
  return out
}

/** Copies the rows `idx` (of `rowBytes` each, from `base`) to `out` at `w`; returns the new end. */
function copyRows (src: Buffer, base: number, rowBytes: number, idx: number[], contiguous: boolean, out: Buffer, w: number): number {
  if (contiguous) {
    const start = base + (idx[0] as number) * rowBytes
    return w + src.copy(out, w, start, start + idx.length * rowBytes)
  }
  for (const i of idx) w += src.copy(out, w, base + i * rowBytes, base + (i + 1) * rowBytes)
  return w
}

interface ParsedChunkCache {
  vTrans: boolean
  layers: LayerLayout[]
  meta: Buffer
  /** per layer K data, then per layer V data */
  k: Buffer[]
  v: Buffer[]
}

export interface ParsedChunk {
  stateVersion: number
  blockTokens: number
  firstPos: number
  tokens: Int32Array
  caches: ParsedChunkCache[]
  layout: StateLayout
}

/** Parses and validates a chunk (as stored on disk or received from a peer). */
export function parseChunk (bytes: Buffer): ParsedChunk {
  const r = new Reader(bytes)
  const magic = r.u32('chunk magic')
  if (magic !== CHUNK_MAGIC) throw new InvalidStateError('not a promptmesh KV chunk')
  const format = r.u32('chunk format')
  if (format !== CHUNK_FORMAT_VERSION) throw new UnsupportedStateLayoutError(`chunk format ${format}`)
  const stateVersion = r.u32('state version')
  if (stateVersion !== STATE_VERSION) throw new UnsupportedStateLayoutError(`chunk of state version ${stateVersion}`)
  const blockTokens = r.u32('block tokens')
  checkRange(blockTokens, 1, 1 << 16, 'block tokens')
  // a block starts on a multiple of its size; a tail (shorter) starts where its prompt's last block does
  const firstPos = r.u32('first position')
  checkRange(firstPos, 0, MAX_POSITION, 'first position')
  const nCaches = r.u32('cache count')
  checkRange(nCaches, 1, MAX_CACHES, 'cache count')
  const tokOffset = r.skip(blockTokens * 4, 'chunk tokens')
  const tokens = new Int32Array(blockTokens)
  for (let i = 0; i < blockTokens; i++) tokens[i] = bytes.readInt32LE(tokOffset + i * 4)
  const caches: ParsedChunkCache[] = []
  for (let c = 0; c < nCaches; c++) {
    const vTrans = r.u32('v_trans')
    if (vTrans > 1) throw new UnsupportedStateLayoutError(`v_trans ${vTrans}`)
    const nLayer = r.u32('n_layer')
    checkRange(nLayer, 1, MAX_LAYERS, 'n_layer')
    const metaBytes = r.u32('meta bytes')
    const layers: LayerLayout[] = []
    for (let l = 0; l < nLayer; l++) {
      const kType = r.i32('k_type'); checkType(kType, 'K')
      const kRowBytes = r.u32('k_row_bytes'); checkRange(kRowBytes, 1, MAX_ROW_BYTES, 'k_row_bytes')
      const vType = r.i32('v_type'); checkType(vType, 'V')
      const vUnitBytes = r.u32('v unit bytes'); checkRange(vUnitBytes, 1, MAX_ROW_BYTES, 'v unit bytes')
      const nEmbdV = r.u32('n_embd_v'); checkRange(nEmbdV, vTrans === 1 ? 1 : 0, vTrans === 1 ? MAX_EMBD : 0, 'n_embd_v')
      r.skip(4, 'reserved')
      layers.push({ kType, kRowBytes, vType, vUnitBytes, nEmbdV })
    }
    const metaAt = r.skip(metaBytes, 'cell metadata')
    const meta = bytes.subarray(metaAt, metaAt + metaBytes)
    checkChunkMeta(meta, blockTokens, firstPos)
    const k = layers.map(l => { const at = r.skip(l.kRowBytes * blockTokens, 'K rows'); return bytes.subarray(at, at + l.kRowBytes * blockTokens) })
    const v = layers.map(l => {
      const n = vTrans === 1 ? l.nEmbdV * blockTokens * l.vUnitBytes : l.vUnitBytes * blockTokens
      const at = r.skip(n, 'V data')
      return bytes.subarray(at, at + n)
    })
    caches.push({ vTrans: vTrans === 1, layers, meta, k, v })
  }
  if (r.offset !== bytes.length) throw new InvalidStateError(`chunk has ${bytes.length - r.offset} trailing bytes`)
  const layout: StateLayout = { stateVersion, caches: caches.map(c => ({ vTrans: c.vTrans, layers: c.layers })) }
  return { stateVersion, blockTokens, firstPos, tokens, caches, layout }
}

/** Cell metadata must list exactly the block's positions, in order: gaps load silently and give wrong output. */
function checkChunkMeta (meta: Buffer, blockTokens: number, firstPos: number): void {
  let o = 0
  for (let t = 0; t < blockTokens; t++) {
    if (o + 8 > meta.length) throw new InvalidStateError('chunk cell metadata truncated')
    const pos = meta.readInt32LE(o)
    if (pos !== firstPos + t) throw new InvalidStateError(`chunk cell ${t} has position ${pos}, want ${firstPos + t}`)
    const nSeq = meta.readUInt32LE(o + 4)
    if (nSeq !== 1) throw new UnsupportedStateLayoutError(`chunk cell with ${nSeq} sequence ids`)
    o += 8 + nSeq * 4
  }
  if (o !== meta.length) throw new UnsupportedStateLayoutError('chunk cell metadata has extra bytes (M-RoPE or another unknown layout)')
}

/**
 * Assembles a loadable sequence state for blocks 0..k-1 from their chunks (in order). Throws
 * ChunkMismatchError when they do not form a gap-free prefix of one layout (and of `expected`, the layout
 * the target context produces, when given). `alloc` gives the buffer to write into (≥ the size asked).
 */
export function assembleState (chunks: ParsedChunk[], expected?: StateLayout, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe): Buffer {
  if (chunks.length === 0) throw new ChunkMismatchError('nothing to assemble')
  const first = chunks[0] as ParsedChunk
  const B = first.blockTokens
  const layoutKey = JSON.stringify(first.layout)
  if (expected != null && layoutKey !== JSON.stringify(expected)) throw new ChunkMismatchError('chunk layout differs from this context\'s')
  chunks.forEach((c, i) => {
    // every chunk a whole block, but the last may be a shorter tail
    const last = i === chunks.length - 1
    if (c.blockTokens !== B && !(last && i > 0 && c.blockTokens < B)) throw new ChunkMismatchError(`chunk ${i} has block size ${c.blockTokens}, want ${B}`)
    if (c.firstPos !== i * B) throw new ChunkMismatchError(`chunk ${i} starts at position ${c.firstPos}, want ${i * B}`)
    if (i > 0 && JSON.stringify(c.layout) !== layoutKey) throw new ChunkMismatchError(`chunk ${i} has another layout`)
  })
  const assembly = new StateAssembly(first.layout, chunks.map(c => c.blockTokens), alloc)
  chunks.forEach((c, i) => { assembly.place(i, c) })
  return assembly.state()
}

/** Where one cache's parts start in an assembled state. */
interface CacheOffsets { meta: number, k: number[], v: number[] }

/**
 * A sequence state for a planned run of chunks (entry i holds `counts[i]` positions, in order), written
 * in place as chunks come, in any order: restoring a prefix assembles it while the rest is still on the
 * wire. Every offset follows from the layout and the planned cell count; the headers are written up
 * front, each chunk's tokens, cell metadata, K rows and V data go straight to their places.
 */
export class StateAssembly {
  /** the planned state: complete once every entry is placed */
  readonly bytes: Buffer
  readonly nTokens: number
  private readonly firsts: number[]
  private readonly placed: boolean[]
  private missing: number
  private readonly layoutKey: string
  private readonly offsets: CacheOffsets[] = []

  /** `alloc` gives the buffer to write into (≥ the size asked) */
  constructor (readonly layout: StateLayout, readonly counts: number[], alloc: (bytes: number) => Buffer = Buffer.allocUnsafe) {
    if (counts.length === 0) throw new ChunkMismatchError('nothing to assemble')
    this.firsts = []
    let n = 0
    for (const c of counts) { this.firsts.push(n); n += c }
    this.nTokens = n
    this.placed = counts.map(() => false)
    this.missing = counts.length
    this.layoutKey = JSON.stringify(layout)
    let size = 12 + n * 4
    for (const cache of layout.caches) {
      // n_stream, cell_count, v_trans, n_layer, and per cell i32 pos, u32 n_seq_id = 1, i32 seq_id (chunks with more are refused)
      size += 16 + n * CELL_META_BYTES
      for (const l of cache.layers) size += 12 + n * l.kRowBytes + 12 + n * l.vUnitBytes * (cache.vTrans ? l.nEmbdV : 1)
    }
    const out = alloc(size).subarray(0, size)
    this.bytes = out
    let w = 0
    const u32 = (v: number): void => { w = out.writeUInt32LE(v, w) }
    const i32 = (v: number): void => { w = out.writeInt32LE(v, w) }
    const u64 = (v: number): void => { w = out.writeBigUInt64LE(BigInt(v), w) }
    u32(STATE_MAGIC)
    u32(layout.stateVersion)
    u32(n)
    w += n * 4
    for (const cache of layout.caches) {
      u32(1)
      u32(n)
      const at: CacheOffsets = { meta: w, k: [], v: [] }
      w += n * CELL_META_BYTES
      u32(cache.vTrans ? 1 : 0)
      u32(cache.layers.length)
      for (const l of cache.layers) {
        i32(l.kType)
        u64(l.kRowBytes)
        at.k.push(w)
        w += n * l.kRowBytes
      }
      for (const l of cache.layers) {
        i32(l.vType)
        if (cache.vTrans) { u32(l.vUnitBytes); u32(l.nEmbdV) } else u64(l.vUnitBytes)
        at.v.push(w)
        w += n * l.vUnitBytes * (cache.vTrans ? l.nEmbdV : 1)
      }
      this.offsets.push(at)
    }
    if (w !== size) throw new Error(`assembly laid out ${w} bytes, sized ${size}`)
  }

  /** Whether every planned entry has been placed. */
  get complete (): boolean { return this.missing === 0 }

  /** Writes entry i. Throws ChunkMismatchError when the chunk does not fit that entry. */
  place (i: number, chunk: ParsedChunk): void {
    const count = this.counts[i]
    const first = this.firsts[i] as number
    if (count == null) throw new ChunkMismatchError(`entry ${i} is not planned (${this.counts.length} are)`)
    if (chunk.blockTokens !== count) throw new ChunkMismatchError(`chunk ${i} holds ${chunk.blockTokens} positions, want ${count}`)
    if (chunk.firstPos !== first) throw new ChunkMismatchError(`chunk ${i} starts at position ${chunk.firstPos}, want ${first}`)
    if (JSON.stringify(chunk.layout) !== this.layoutKey) throw new ChunkMismatchError(`chunk ${i} has another layout`)
    chunk.caches.forEach((c) => {
      if (c.meta.length !== count * CELL_META_BYTES) throw new ChunkMismatchError(`chunk ${i} has cells with several sequence ids`)
    })
    const out = this.bytes
    const N = this.nTokens
    for (let t = 0; t < count; t++) out.writeInt32LE(chunk.tokens[t] as number, 12 + (first + t) * 4)
    chunk.caches.forEach((c, ci) => {
      const at = this.offsets[ci] as CacheOffsets
      c.meta.copy(out, at.meta + first * CELL_META_BYTES)
      c.layers.forEach((l, li) => {
        const k = c.k[li] as Buffer
        k.copy(out, (at.k[li] as number) + first * l.kRowBytes)
        const v = c.v[li] as Buffer
        if (!c.vTrans) {
          v.copy(out, (at.v[li] as number) + first * l.vUnitBytes)
          return
        }
        // transposed V: row j of the state holds element j of every cell; this chunk's run sits at `first`
        copyRuns(v, count * l.vUnitBytes, out, (at.v[li] as number) + first * l.vUnitBytes, N * l.vUnitBytes, l.nEmbdV, l.vUnitBytes)
      })
    })
    this.markPlaced(i)
  }

  private markPlaced (i: number): void {
    if (!(this.placed[i] as boolean)) { this.placed[i] = true; this.missing-- }
  }

  /**
   * Writes entries 0..entries-1 from a kept state that holds those positions first (one file instead of
   * a chunk per block): a state assembled for that prefix or for a longer prompt that starts with it.
   * `tokens` are the prompt's; the state must hold them. Throws ChunkMismatchError when the
   * state does not begin with that prefix, cell for cell, in this layout.
   */
  placePrefix (entries: number, state: ParsedState, tokens: ArrayLike<number>): void {
    if (entries < 1 || entries > this.counts.length) throw new ChunkMismatchError(`a prefix of ${entries} entries does not fit ${this.counts.length}`)
    const M = entries < this.counts.length ? this.firsts[entries] as number : this.nTokens
    if (state.tokens.length < M) throw new ChunkMismatchError(`the state holds ${state.tokens.length} positions, want ${M}`)
    for (let t = 0; t < M; t++) if (state.tokens[t] !== tokens[t]) throw new ChunkMismatchError(`the state holds another token at position ${t}`)
    if (JSON.stringify(layoutOf(state)) !== this.layoutKey) throw new ChunkMismatchError('the state has another layout')
    state.caches.forEach(c => {
      // its first M cells must be positions 0..M-1 in order, one sequence id each (what the copies below assume)
      const metaEnd = M < c.cellCount ? c.metaOffsets[M] as number : c.metaEnd
      if (c.cellCount < M || metaEnd - (c.metaOffsets[0] as number) !== M * CELL_META_BYTES) throw new ChunkMismatchError('the state\'s first cells are not one per position')
      for (let i = 0; i < M; i++) if (c.positions[i] !== i) throw new ChunkMismatchError(`the state's cell ${i} has position ${c.positions[i] as number}`)
    })
    const src = state.bytes
    const out = this.bytes
    const N = this.nTokens
    src.copy(out, 12, 12, 12 + M * 4)
    state.caches.forEach((c, ci) => {
      const at = this.offsets[ci] as CacheOffsets
      src.copy(out, at.meta, c.metaOffsets[0] as number, (c.metaOffsets[0] as number) + M * CELL_META_BYTES)
      c.layers.forEach((l, li) => {
        src.copy(out, at.k[li] as number, l.kOffset, l.kOffset + M * l.kRowBytes)
        if (!c.vTrans) {
          src.copy(out, at.v[li] as number, l.vOffset, l.vOffset + M * l.vUnitBytes)
          return
        }
        // transposed V: the first M elements of each of the state's rows (C elements) start a row here (N elements)
        const run = M * l.vUnitBytes
        for (let j = 0; j < l.nEmbdV; j++) {
          const from = l.vOffset + j * c.cellCount * l.vUnitBytes
          src.copy(out, (at.v[li] as number) + j * N * l.vUnitBytes, from, from + run)
        }
      })
    })
    for (let i = 0; i < entries; i++) this.markPlaced(i)
  }

  /** The assembled state; throws when an entry is missing. */
  state (): Buffer {
    if (this.missing > 0) throw new ChunkMismatchError(`${this.missing} of ${this.counts.length} chunks are missing`)
    return this.bytes
  }
}

const CELL_META_BYTES = 12

/**
 * Copies `rows` runs of `run` bytes, back to back in `src`, to `dst` at `at`, `at + stride`, ...
 * Runs of a few dozen bytes: element-wise through typed views when aligned (Buffer#copy costs a call
 * and a view per run, thousands per chunk), else Buffer#copy.
 */
function copyRuns (src: Buffer, run: number, dst: Buffer, at: number, stride: number, rows: number, unit: number): void {
  if ((unit === 2 || unit === 4) && (src.byteOffset % unit) === 0 && ((dst.byteOffset + at) % unit) === 0 && run % unit === 0 && stride % unit === 0) {
    const Typed = unit === 2 ? Uint16Array : Uint32Array
    const s = new Typed(src.buffer as ArrayBuffer, src.byteOffset, (rows * run) / unit)
    const d = new Typed(dst.buffer as ArrayBuffer, dst.byteOffset + at, ((rows - 1) * stride + run) / unit)
    const n = run / unit
    const step = stride / unit
    for (let j = 0, r = 0, o = 0; j < rows; j++, o += step) {
      for (let e = 0; e < n; e++) d[o + e] = s[r++] as number
    }
    return
  }
  for (let j = 0; j < rows; j++) src.copy(dst, at + j * stride, j * run, (j + 1) * run)
}

/** Approximate bytes of a chunk of `blockTokens` cells in this layout (for budgets and limits). */
export function chunkBytesFor (layout: StateLayout, blockTokens: number): number {
  return blockTokens * cellDataBytes(layout)
}
