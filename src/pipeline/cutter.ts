import { cutBlock, cutCells } from '../engine/state-codec.js'
import type { ReuseChain } from './chain.js'
import type { ChunkStore } from '../cache/chunk-store.js'
import type { Engine } from '../engine/engine.js'
import type { Logger } from '@libp2p/interface'

/**
 * Cuts a prompt's new chunks — whole blocks from `firstNew` on, and its tail — out of states the engine
 * saves while evaluating it, skipping what the store already holds. Saves only while something is
 * missing: a prompt whose chunks are all stored costs no save.
 */
export class ChunkCutter {
  /** key → chunk bytes, for the store */
  readonly cut = new Map<string, Buffer>()

  constructor (
    private readonly engine: Engine,
    private readonly store: ChunkStore,
    private readonly chain: ReuseChain,
    private readonly firstNew: number,
    private readonly log?: Logger
  ) {}

  async saveAndCut (): Promise<void> {
    if (!this.wanted()) return
    try {
      const state = await this.engine.saveState()
      const { blockKeys, blockTokens } = this.chain
      for (let i = this.firstNew; i < blockKeys.length; i++) {
        const key = blockKeys[i] as string
        if (!this.missing(key)) continue
        const chunk = cutBlock(state, i, blockTokens)
        if (chunk != null) this.cut.set(key, chunk)
      }
      const tailKey = this.chain.tailKey
      if (tailKey != null && this.missing(tailKey)) {
        const { first, count } = this.chain.tail
        const chunk = cutCells(state, first, count)
        if (chunk != null) this.cut.set(tailKey, chunk)
      }
    } catch (err) {
      this.log?.error('cutting chunks failed, this prompt will not be cached: %s', (err as Error).message)
    }
  }

  private missing (key: string): boolean {
    return !this.cut.has(key) && !this.store.has(key)
  }

  private wanted (): boolean {
    for (let i = this.firstNew; i < this.chain.blockKeys.length; i++) if (this.missing(this.chain.blockKeys[i] as string)) return true
    return this.chain.tailKey != null && this.missing(this.chain.tailKey)
  }
}
