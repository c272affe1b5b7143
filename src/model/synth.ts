import { mkdir, rename, rm } from 'node:fs/promises'
import { endianness } from 'node:os'
import { dirname } from 'node:path'
import { GgmlType, gguf, writeGguf, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './gguf-writer.js'
import type { GgufTensor, GgufValue } from './gguf-writer.js'
import { buildVocab, TokenType } from './vocab.js'
import type { Vocab } from './vocab.js'

export type ShapeName = 'tiny-llama' | 'tiny-gemma3' | 'gemma3-270m'

export interface ShapeSpec {
  name: ShapeName
  arch: 'llama' | 'gemma3'
  nLayer: number
  nEmbd: number
  nHead: number
  nHeadKv: number
  headDim: number
  nFf: number
  nVocab: number
  contextLength: number
  /** gemma3 only: window of the sliding-window layers (llama.cpp makes every 6th layer global) */
  slidingWindow?: number
  ropeFreqBase: number
  rmsEps: number
  /** type of the 2-D weight matrices; norms are always F32 */
  matrixType: GgmlType
  /** no output.weight: llama.cpp reuses token_embd as the LM head */
  tiedOutput: boolean
  /**
   * Weight scales. With plain random weights the residual stream is dominated by the current
   * token's embedding and greedy decoding echoes the last token; strong attention/FFN branches
   * make the output depend on context instead.
   */
  gains: {
    embed: number // std of token_embd entries × sqrt(n_embd)
    postNorm: number // gemma3 post_attention_norm / post_ffw_norm weight
    qk: number // sharper attention: std multiplier of attn_q / attn_k (llama), attn_q_norm / attn_k_norm weight (gemma3)
    attnOut: number // std multiplier of attn_output
    ffnOut: number // std multiplier of ffn_down
  }
}

export const SHAPES: Readonly<Record<ShapeName, Readonly<ShapeSpec>>> = {
  'tiny-llama': {
    name: 'tiny-llama',
    arch: 'llama',
    nLayer: 4,
    nEmbd: 128,
    nHead: 4,
    nHeadKv: 2,
    headDim: 32,
    nFf: 256,
    nVocab: 2048,
    contextLength: 4096,
    ropeFreqBase: 10_000,
    rmsEps: 1e-5,
    matrixType: GgmlType.F16,
    tiedOutput: false,
    gains: { embed: 1, postNorm: 1, qk: 2, attnOut: 4, ffnOut: 2 }
  },
  'tiny-gemma3': {
    name: 'tiny-gemma3',
    arch: 'gemma3',
    nLayer: 6,
    nEmbd: 128,
    nHead: 4,
    nHeadKv: 1,
    headDim: 64,
    nFf: 256,
    nVocab: 2048,
    contextLength: 4096,
    slidingWindow: 64,
    ropeFreqBase: 1_000_000,
    rmsEps: 1e-6,
    matrixType: GgmlType.F32,
    tiedOutput: true,
    gains: { embed: 1, postNorm: 4, qk: 2, attnOut: 1, ffnOut: 1 }
  },
  'gemma3-270m': {
    name: 'gemma3-270m',
    arch: 'gemma3',
    nLayer: 18,
    nEmbd: 640,
    nHead: 4,
    nHeadKv: 1,
    headDim: 256,
    nFf: 2048,
    nVocab: 262_144,
    contextLength: 32_768,
    slidingWindow: 512,
    ropeFreqBase: 1_000_000,
    rmsEps: 1e-6,
    matrixType: GgmlType.Q8_0,
    tiedOutput: true,
    gains: { embed: 1, postNorm: 4, qk: 2, attnOut: 1, ffnOut: 1 }
  }
}

export interface SynthOptions {
  shape: ShapeName
  /** output file path */
  out: string
  /** uint32; same seed gives a byte-identical file */
  seed?: number
  onProgress?: (fraction: number) => void
}

export interface SynthResult {
  path: string
  bytes: number
  shape: Readonly<ShapeSpec>
}

export class SynthError extends Error {
  override name = 'SynthError'
}

let partials = 0
const CHUNK = 1 << 18 // elements per produced chunk
const FILE_TYPE: Record<GgmlType, number> = { [GgmlType.F32]: 0, [GgmlType.F16]: 1, [GgmlType.Q8_0]: 7 } // LLAMA_FTYPE_*
const SWA_ROPE_BASE = 10_000 // gemma3 local layers
// LM-head rows of control, byte and filler tokens are shrunk so greedy output is made of real
// pieces: no EOS/EOT ending generation early, no invalid UTF-8, text that reads like fragments
const SUPPRESSED_ROW_GAIN = 0.25

/** Writes a synthetic GGUF model with deterministic pseudo-random weights. */
export async function synthesizeModel (options: SynthOptions): Promise<SynthResult> {
  const shape = SHAPES[options.shape]
  if (shape === undefined) throw new SynthError(`unknown shape: ${String(options.shape)}`)
  const seed = options.seed ?? 1
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) throw new SynthError(`seed must be a uint32, got ${seed}`)
  // typed arrays are written as-is, and GGUF is little-endian
  if (endianness() !== 'LE') throw new SynthError('big-endian hosts are not supported')

  await mkdir(dirname(options.out), { recursive: true })
  // written aside and renamed, so a crash never leaves a truncated model under the final name
  const tmp = `${options.out}.${process.pid}-${++partials}.partial`
  try {
    const vocab = buildVocab(shape.nVocab, { turnTokens: shape.arch === 'gemma3' })
    const bytes = await writeGguf(tmp, { kv: metadata(shape, seed, vocab), tensors: tensors(shape, seed, vocab) }, options.onProgress)
    await rename(tmp, options.out)
    return { path: options.out, bytes, shape }
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

function metadata (s: ShapeSpec, seed: number, vocab: Vocab): Array<[string, GgufValue]> {
  const a = s.arch
  const kv: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(a)],
    ['general.name', gguf.str(`promptmesh synthetic ${s.name} seed ${seed}`)],
    ['general.description', gguf.str('Synthetic model with pseudo-random weights; produces meaningless text. For tests and benchmarks only.')],
    ['general.file_type', gguf.u32(FILE_TYPE[s.matrixType])],
    ['general.alignment', gguf.u32(32)],
    [`${a}.context_length`, gguf.u32(s.contextLength)],
    [`${a}.embedding_length`, gguf.u32(s.nEmbd)],
    [`${a}.block_count`, gguf.u32(s.nLayer)],
    [`${a}.feed_forward_length`, gguf.u32(s.nFf)],
    [`${a}.attention.head_count`, gguf.u32(s.nHead)],
    [`${a}.attention.head_count_kv`, gguf.u32(s.nHeadKv)],
    [`${a}.attention.key_length`, gguf.u32(s.headDim)],
    [`${a}.attention.value_length`, gguf.u32(s.headDim)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(s.rmsEps)],
    [`${a}.rope.freq_base`, gguf.f32(s.ropeFreqBase)]
  ]
  if (a === 'llama') {
    kv.push([`${a}.rope.dimension_count`, gguf.u32(s.headDim)], [`${a}.vocab_size`, gguf.u32(s.nVocab)])
  }
  if (s.slidingWindow !== undefined) {
    kv.push([`${a}.attention.sliding_window`, gguf.u32(s.slidingWindow)], [`${a}.rope.freq_base_swa`, gguf.f32(SWA_ROPE_BASE)])
  }
  kv.push(
    ['tokenizer.ggml.model', gguf.str('llama')],
    ['tokenizer.ggml.tokens', gguf.strs(vocab.tokens)],
    ['tokenizer.ggml.scores', gguf.f32s(vocab.scores)],
    ['tokenizer.ggml.token_type', gguf.i32s(vocab.types)],
    ['tokenizer.ggml.unknown_token_id', gguf.u32(vocab.unk)],
    ['tokenizer.ggml.bos_token_id', gguf.u32(vocab.bos)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(vocab.eos)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)]
  )
  if (vocab.endOfTurn !== undefined) kv.push(['tokenizer.ggml.eot_token_id', gguf.u32(vocab.endOfTurn)])
  return kv
}

function tensors (s: ShapeSpec, seed: number, vocab: Vocab): GgufTensor[] {
  const out: GgufTensor[] = []
  const g = s.gains
  const q = s.nHead * s.headDim
  const kvDim = s.nHeadKv * s.headDim
  const gemma = s.arch === 'gemma3'
  const qkMatrix = gemma ? 1 : g.qk // gemma3 RMS-normalizes Q and K, so the gain goes into those norms
  // std gain/sqrt(n_in) keeps activations at unit scale before the gains
  const matrix = (name: string, nIn: number, nOut: number, gain: number, rowGain?: (row: number) => number): void => {
    const index = out.length
    const std = gain / Math.sqrt(nIn)
    out.push({ name, dims: [nIn, nOut], type: s.matrixType, data: () => randomChunks(nIn, nOut, s.matrixType, std, rng(seed, index), rowGain) })
  }
  const lmHeadRow = (id: number): number =>
    vocab.types[id] === TokenType.NORMAL && id < vocab.firstFiller ? 1 : SUPPRESSED_ROW_GAIN
  const norm = (name: string, n: number, value: number): void => {
    out.push({ name, dims: [n], type: GgmlType.F32, data: () => constChunks(n, value) })
  }

  matrix('token_embd.weight', s.nEmbd, s.nVocab, g.embed, s.tiedOutput ? lmHeadRow : undefined)
  for (let i = 0; i < s.nLayer; i++) {
    const b = `blk.${i}`
    norm(`${b}.attn_norm.weight`, s.nEmbd, 1)
    matrix(`${b}.attn_q.weight`, s.nEmbd, q, qkMatrix)
    matrix(`${b}.attn_k.weight`, s.nEmbd, kvDim, qkMatrix)
    matrix(`${b}.attn_v.weight`, s.nEmbd, kvDim, 1)
    matrix(`${b}.attn_output.weight`, q, s.nEmbd, g.attnOut)
    norm(`${b}.ffn_norm.weight`, s.nEmbd, 1)
    matrix(`${b}.ffn_gate.weight`, s.nEmbd, s.nFf, 1)
    matrix(`${b}.ffn_up.weight`, s.nEmbd, s.nFf, 1)
    matrix(`${b}.ffn_down.weight`, s.nFf, s.nEmbd, g.ffnOut)
    if (gemma) {
      norm(`${b}.attn_q_norm.weight`, s.headDim, g.qk)
      norm(`${b}.attn_k_norm.weight`, s.headDim, g.qk)
      norm(`${b}.post_attention_norm.weight`, s.nEmbd, g.postNorm)
      norm(`${b}.post_ffw_norm.weight`, s.nEmbd, g.postNorm)
    }
  }
  norm('output_norm.weight', s.nEmbd, 1)
  if (!s.tiedOutput) matrix('output.weight', s.nEmbd, s.nVocab, 1, lmHeadRow)
  return out
}

/** xorshift128 seeded through splitmix32; one independent stream per tensor. */
function rng (seed: number, stream: number): () => number {
  let z = (seed ^ Math.imul(stream + 1, 0x9e37_79b9)) >>> 0
  const splitmix = (): number => {
    z = (z + 0x9e37_79b9) >>> 0
    let t = z
    t = Math.imul(t ^ (t >>> 16), 0x85eb_ca6b)
    t = Math.imul(t ^ (t >>> 13), 0xc2b2_ae35)
    return (t ^ (t >>> 16)) >>> 0
  }
  let x = splitmix()
  let y = splitmix()
  let zz = splitmix()
  let w = splitmix() | 1 // never all-zero
  return () => {
    const t = x ^ (x << 11)
    x = y; y = zz; zz = w
    w = (w ^ (w >>> 19) ^ t ^ (t >>> 8)) >>> 0
    return w
  }
}

/** Uniform random rows (ne0 = nIn each), `CHUNK`-ish elements per yielded chunk. */
function * randomChunks (nIn: number, rows: number, type: GgmlType, std: number, next: () => number,
  rowGain: (row: number) => number = () => 1): Generator<Uint8Array> {
  if (type === GgmlType.Q8_0) {
    yield * q8Chunks(nIn, rows, std, next, rowGain)
    return
  }
  const a = (std * Math.sqrt(3)) / 0x8000_0000 // uniform in [-std·√3, std·√3) has the wanted std
  const perChunk = Math.max(1, Math.floor(CHUNK / nIn))
  for (let r0 = 0; r0 < rows; r0 += perChunk) {
    const n = Math.min(perChunk, rows - r0) * nIn
    const f = type === GgmlType.F32 ? new Float32Array(n) : new Uint16Array(n)
    const toBits = type === GgmlType.F32 ? (x: number) => x : f16Bits
    for (let i = 0; i < n; i += nIn) {
      const ar = a * rowGain(r0 + i / nIn)
      for (let j = i; j < i + nIn; j++) f[j] = toBits((next() - 0x8000_0000) * ar)
    }
    yield new Uint8Array(f.buffer)
  }
}

/** Random int8 quants with a per-row f16 scale: no float quantization needed, so 300 MB takes seconds. */
function * q8Chunks (nIn: number, rows: number, std: number, next: () => number, rowGain: (row: number) => number): Generator<Uint8Array> {
  const blocksPerRow = nIn / Q8_0_BLOCK
  const perChunk = Math.max(1, Math.floor(CHUNK / nIn))
  for (let r0 = 0; r0 < rows; r0 += perChunk) {
    const m = Math.min(perChunk, rows - r0)
    const buf = new Uint8Array(m * blocksPerRow * Q8_0_BLOCK_BYTES)
    let o = 0
    for (let r = r0; r < r0 + m; r++) {
      const d = f16Bits((std * rowGain(r)) / 73.9) // std of uniform int8 is ≈73.9
      for (let b = 0; b < blocksPerRow; b++) {
        buf[o++] = d & 0xff
        buf[o++] = d >>> 8
        for (let k = 0; k < Q8_0_BLOCK / 4; k++) {
          const x = next()
          buf[o++] = x; buf[o++] = x >>> 8; buf[o++] = x >>> 16; buf[o++] = x >>> 24
        }
      }
    }
    yield buf
  }
}

function * constChunks (n: number, value: number): Generator<Uint8Array> {
  yield new Uint8Array(new Float32Array(n).fill(value).buffer)
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** float32 → IEEE half bits, round-half-up on the mantissa (close enough for random weights). */
export function f16Bits (v: number): number {
  f32[0] = v
  const x = u32[0] ?? 0
  const sign = (x >>> 16) & 0x8000
  const exp = ((x >>> 23) & 0xff) - 127 + 15
  const mant = x & 0x7f_ffff
  if (exp >= 31) return sign | 0x7c00
  if (exp <= 0) {
    if (exp < -10) return sign
    const m = mant | 0x80_0000
    const shift = 14 - exp
    return sign | ((m >>> shift) + ((m >>> (shift - 1)) & 1))
  }
  return (sign | (exp << 10) | (mant >>> 13)) + ((mant >>> 12) & 1)
}
