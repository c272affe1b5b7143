import { blockKeys, FINAL_EVAL_TOKENS, reusableBlocks, tailKey } from '../cache/keys.js'

/** Positions [first, first + count) of the prompt that one chunk holds. */
export interface Span { first: number, count: number }

/**
 * What a prompt may reuse, in order: its whole blocks (but one that would hold its last
 * FINAL_EVAL_TOKENS tokens), then its tail — the tokens after those blocks but the last
 * FINAL_EVAL_TOKENS, a chunk of its own so that a prompt asked again anywhere in the mesh evaluates
 * two tokens, not up to a block. The last tokens are always evaluated: their logits start the answer,
 * and a one-token batch would round differently (see FINAL_EVAL_TOKENS).
 */
export class ReuseChain {
  /** keys of every whole block of the prompt (what a computed prompt leaves behind) */
  readonly blockKeys: string[]
  /** keys of what may be reused, in order: `reusable` blocks, then the tail key if there is a tail */
  readonly keys: string[]
  /** whole blocks among `keys` */
  readonly reusable: number
  /** the tail's key, if the prompt has a tail */
  readonly tailKey?: string
  readonly blockTokens: number
  private readonly tailEnd: number

  /** `caching` false: an empty chain (nothing looked up, nothing cut) */
  constructor (fingerprint: string, tokens: number[], blockTokens: number, caching: boolean) {
    const B = blockTokens
    this.blockTokens = B
    this.blockKeys = caching ? blockKeys(fingerprint, tokens, B) : []
    this.reusable = Math.min(this.blockKeys.length, reusableBlocks(tokens.length, B))
    this.keys = this.blockKeys.slice(0, this.reusable)
    this.tailEnd = tokens.length - FINAL_EVAL_TOKENS
    const from = this.reusable * B
    if (caching && this.tailEnd > from) {
      this.tailKey = tailKey(fingerprint, this.blockKeys[this.reusable - 1], tokens, from, this.tailEnd)
      this.keys.push(this.tailKey)
    }
  }

  get length (): number { return this.keys.length }

  /** prompt tokens the first n entries hold */
  covered (n: number): number {
    return n > this.reusable ? this.tailEnd : n * this.blockTokens
  }

  /** the positions entry i holds */
  span (i: number): Span {
    const first = i * this.blockTokens
    return { first, count: this.covered(i + 1) - first }
  }

  /** the tail's positions (count 0: no tail) */
  get tail (): Span {
    const first = this.reusable * this.blockTokens
    return { first, count: this.tailKey != null ? this.tailEnd - first : 0 }
  }
}
