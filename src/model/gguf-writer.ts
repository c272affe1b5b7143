import { open } from 'node:fs/promises'

/** ggml tensor types this writer can lay out. */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8 } as const
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType]

export const GGUF_MAGIC = 0x46_55_47_47 // 'GGUF' read as little-endian uint32
export const GGUF_VERSION = 3
export const GGUF_ALIGNMENT = 32

/** Q8_0: blocks of 32 weights, each an f16 scale followed by 32 int8. */
export const Q8_0_BLOCK = 32
export const Q8_0_BLOCK_BYTES = 34

export type GgufValue =
  | { type: 'uint32', value: number }
  | { type: 'int32', value: number }
  | { type: 'float32', value: number }
  | { type: 'bool', value: boolean }
  | { type: 'string', value: string }
  | { type: 'string[]', value: readonly string[] }
  | { type: 'float32[]', value: ArrayLike<number> }
  | { type: 'int32[]', value: ArrayLike<number> }

/** Shorthands so call sites read `gguf.u32(4)` rather than object literals. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'uint32', value }),
  i32: (value: number): GgufValue => ({ type: 'int32', value }),
  f32: (value: number): GgufValue => ({ type: 'float32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strs: (value: readonly string[]): GgufValue => ({ type: 'string[]', value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: 'float32[]', value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: 'int32[]', value })
}

export interface GgufTensor {
  name: string
  /** innermost first (ggml ne0 first), e.g. token_embd is [n_embd, n_vocab] */
  dims: readonly number[]
  type: GgmlType
  /** produces exactly tensorBytes(dims, type) bytes, in any chunking; called once, when the tensor is written */
  data: () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>
}

export interface GgufFile {
  kv: ReadonlyArray<readonly [string, GgufValue]>
  tensors: readonly GgufTensor[]
}

export class GgufWriteError extends Error {
  override name = 'GgufWriteError'
}

// GGUF value type ids
const T_INT32 = 5
const T_UINT32 = 4
const T_FLOAT32 = 6
const T_BOOL = 7
const T_STRING = 8
const T_ARRAY = 9

export function tensorBytes (dims: readonly number[], type: GgmlType): number {
  const n = dims.reduce((a, b) => a * b, 1)
  switch (type) {
    case GgmlType.F32: return n * 4
    case GgmlType.F16: return n * 2
    case GgmlType.Q8_0:
      if ((dims[0] ?? 0) % Q8_0_BLOCK !== 0) throw new GgufWriteError(`Q8_0 needs ne0 divisible by ${Q8_0_BLOCK}, got ${dims[0]}`)
      return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES
  }
}

const align = (n: number, a: number = GGUF_ALIGNMENT): number => Math.ceil(n / a) * a

/** Growable little-endian byte buffer for the (small) header part of the file. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16)
  length = 0

  private reserve (n: number): void {
    if (this.length + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.length + n) size *= 2
    const next = Buffer.alloc(size)
    this.buf.copy(next, 0, 0, this.length)
    this.buf = next
  }

  u32 (v: number): void { this.reserve(4); this.buf.writeUInt32LE(v, this.length); this.length += 4 }
  i32 (v: number): void { this.reserve(4); this.buf.writeInt32LE(v, this.length); this.length += 4 }
  u64 (v: number): void { this.reserve(8); this.buf.writeBigUInt64LE(BigInt(v), this.length); this.length += 8 }
  f32 (v: number): void { this.reserve(4); this.buf.writeFloatLE(v, this.length); this.length += 4 }
  u8 (v: number): void { this.reserve(1); this.buf[this.length++] = v }
  str (s: string): void {
    const bytes = Buffer.from(s, 'utf8')
    this.u64(bytes.length)
    this.reserve(bytes.length)
    bytes.copy(this.buf, this.length)
    this.length += bytes.length
  }

  zeros (n: number): void { this.reserve(n); this.buf.fill(0, this.length, this.length + n); this.length += n }
  bytes (): Buffer { return this.buf.subarray(0, this.length) }
}

function writeValue (out: ByteSink, v: GgufValue): void {
  switch (v.type) {
    case 'uint32': out.u32(T_UINT32); out.u32(v.value); break
    case 'int32': out.u32(T_INT32); out.i32(v.value); break
    case 'float32': out.u32(T_FLOAT32); out.f32(v.value); break
    case 'bool': out.u32(T_BOOL); out.u8(v.value ? 1 : 0); break
    case 'string': out.u32(T_STRING); out.str(v.value); break
    case 'string[]':
      out.u32(T_ARRAY); out.u32(T_STRING); out.u64(v.value.length)
      for (const s of v.value) out.str(s)
      break
    case 'float32[]':
      out.u32(T_ARRAY); out.u32(T_FLOAT32); out.u64(v.value.length)
      for (let i = 0; i < v.value.length; i++) out.f32(v.value[i] ?? 0)
      break
    case 'int32[]':
      out.u32(T_ARRAY); out.u32(T_INT32); out.u64(v.value.length)
      for (let i = 0; i < v.value.length; i++) out.i32(v.value[i] ?? 0)
      break
  }
}

/**
 * Streams a GGUF v3 file to `path`: header, KVs and tensor infos are built in memory,
 * tensor data goes straight from each tensor's producer to the file handle.
 * Returns the file size in bytes.
 */
export async function writeGguf (path: string, file: GgufFile, onProgress?: (fraction: number) => void): Promise<number> {
  const kv = file.kv.some(([k]) => k === 'general.alignment')
    ? file.kv
    : [...file.kv, ['general.alignment', gguf.u32(GGUF_ALIGNMENT)] as const]

  const head = new ByteSink()
  head.u32(GGUF_MAGIC)
  head.u32(GGUF_VERSION)
  head.u64(file.tensors.length)
  head.u64(kv.length)
  for (const [key, value] of kv) {
    head.str(key)
    writeValue(head, value)
  }

  const sizes = file.tensors.map(t => tensorBytes(t.dims, t.type))
  let offset = 0
  file.tensors.forEach((t, i) => {
    head.str(t.name)
    head.u32(t.dims.length)
    for (const d of t.dims) head.u64(d)
    head.u32(t.type)
    head.u64(offset)
    offset = align(offset + (sizes[i] ?? 0))
  })
  head.zeros(align(head.length) - head.length)
  const dataBytes = offset
  const total = head.length + dataBytes

  const fh = await open(path, 'w')
  try {
    await fh.write(head.bytes())
    let written = 0 // aligned data bytes, for progress
    const zeros = new Uint8Array(GGUF_ALIGNMENT)
    for (const [i, t] of file.tensors.entries()) {
      const expected = sizes[i] ?? 0
      let got = 0
      for await (const chunk of t.data()) {
        got += chunk.length
        if (got > expected) throw new GgufWriteError(`tensor ${t.name}: producer wrote more than ${expected} bytes`)
        await fh.write(chunk)
      }
      if (got !== expected) throw new GgufWriteError(`tensor ${t.name}: producer wrote ${got} of ${expected} bytes`)
      const pad = align(expected) - expected
      if (pad > 0) await fh.write(zeros.subarray(0, pad))
      written += align(expected)
      onProgress?.(Math.min(1, written / Math.max(1, dataBytes)))
    }
  } finally {
    await fh.close()
  }
  return total
}
