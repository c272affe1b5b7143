import { createHash } from 'node:crypto'

/** Chunk keys are lowercase hex SHA-256 digests. */
export const KEY_HEX_LENGTH = 64

const TAIL_MARKER = Buffer.from('promptmesh/tail/1')

function tokenBytes (tokens: ArrayLike<number>, start: number, end: number): Buffer {
  const buf = Buffer.allocUnsafe((end - start) * 4)
  for (let i = start; i < end; i++) buf.writeInt32LE(tokens[i] as number, (i - start) * 4)
  return buf
}

/**
 * Chained block keys: key_0 = H(fingerprint ‖ block_0), key_i = H(key_{i-1} ‖ block_i), H = SHA-256 over
 * little-endian i32 token ids. A key names a block *and everything before it*, so equal keys mean equal
 * prefixes on every node; no per-process seed is involved. Whole blocks get these keys; a prompt's
 * shorter tail gets a tailKey.
 */
export function blockKeys (modelFingerprint: string, tokens: ArrayLike<number>, blockTokens: number, maxBlocks = Infinity): string[] {
  if (!Number.isInteger(blockTokens) || blockTokens < 1) throw new RangeError(`block size must be a positive integer, got ${blockTokens}`)
  const n = Math.min(Math.floor(tokens.length / blockTokens), maxBlocks)
  const keys: string[] = []
  let prev = Buffer.from(modelFingerprint, 'hex')
  for (let i = 0; i < n; i++) {
    const digest = createHash('sha256').update(prev).update(tokenBytes(tokens, i * blockTokens, (i + 1) * blockTokens)).digest()
    keys.push(digest.toString('hex'))
    prev = digest
  }
  return keys
}

/**
 * Key of a prompt's tail: its tokens after the last reusable block, but the last FINAL_EVAL_TOKENS
 * (always evaluated). Chained to the block before it like a block key, with a marker so that a tail
 * never answers for a block. A prompt asked again then reuses all but those last tokens.
 */
export function tailKey (modelFingerprint: string, blockKeyBefore: string | undefined, tokens: ArrayLike<number>, from: number, to: number): string {
  const prev = Buffer.from(blockKeyBefore ?? modelFingerprint, 'hex')
  return createHash('sha256').update(prev).update(TAIL_MARKER).update(tokenBytes(tokens, from, to)).digest('hex')
}

/**
 * Prompt tokens always evaluated, never restored: the next-token logits need the last one, and a batch
 * of one token takes another matmul path in llama.cpp's CPU backend (vector dot products instead of
 * the batched kernel) whose rounding differs in the last bits — enough to flip a greedy near-tie, so
 * that an answer would differ from the uncached one, where the last token is evaluated with others.
 */
export const FINAL_EVAL_TOKENS = 2

/** Blocks that may be reused for a prompt: the last FINAL_EVAL_TOKENS tokens are left to evaluate. */
export function reusableBlocks (promptTokens: number, blockTokens: number): number {
  return promptTokens > FINAL_EVAL_TOKENS ? Math.floor((promptTokens - FINAL_EVAL_TOKENS) / blockTokens) : 0
}

export function isChunkKey (key: string): boolean {
  return key.length === KEY_HEX_LENGTH && /^[0-9a-f]+$/.test(key)
}
