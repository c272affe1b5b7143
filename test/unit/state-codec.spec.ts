import { expect } from 'chai'
import { ChunkMismatchError } from '../../src/engine/errors.js'
import { assembleState, cutBlock, cutCells, parseChunk, parseState, StateAssembly } from '../../src/engine/state-codec.js'
import { buildState, range } from '../fixtures/states.js'
import type { ParsedChunk } from '../../src/engine/state-codec.js'
import type { FakeCache } from '../fixtures/states.js'

const B = 8
const tokens = range(100, 140) // 40 tokens: 5 blocks

function gemmaLike (positions: number[], swaPositions: number[], vTrans = true): FakeCache[] {
  return [
    { vTrans, layers: 2, kRowBytes: 16, v: 8, positions },
    { vTrans, layers: 3, kRowBytes: 16, v: 8, positions: swaPositions }
  ]
}

describe('state codec', () => {
  describe('parseState', () => {
    it('reads tokens and caches of an iSWA state', () => {
      const state = parseState(buildState(tokens, gemmaLike(range(0, 40), range(24, 40))))
      expect(Array.from(state.tokens)).to.deep.equal(tokens)
      expect(state.caches).to.have.length(2)
      expect(state.caches[1]?.cellCount).to.equal(16)
    })

    it('rejects every truncation with a typed error (a truncated file aborts llama.cpp)', () => {
      const bytes = buildState(tokens.slice(0, 16), gemmaLike(range(0, 16), range(0, 16)))
      for (let n = 0; n < bytes.length; n += 7) {
        expect(() => parseState(bytes.subarray(0, n)), `truncated at ${n}`).to.throw().with.property('name').that.matches(/InvalidStateError|UnsupportedStateLayoutError/)
      }
    })

    it('refuses an unknown version or stream count', () => {
      const bytes = buildState(tokens, gemmaLike(range(0, 40), range(0, 40)))
      const v4 = Buffer.from(bytes); v4.writeUInt32LE(4, 4)
      expect(() => parseState(v4)).to.throw(/version 4/)
      const streams = Buffer.from(bytes); streams.writeUInt32LE(2, 12 + tokens.length * 4)
      expect(() => parseState(streams)).to.throw(/n_stream 2/)
    })
  })

  for (const vTrans of [true, false]) {
    describe(`cut and assemble (v_trans ${String(vTrans)})`, () => {
      it('assembles any prefix exactly as if the state had been saved whole', () => {
        const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), vTrans)))
        const chunks = range(0, 5).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))
        for (let k = 1; k <= 5; k++) {
          const expected = buildState(tokens.slice(0, k * B), gemmaLike(range(0, k * B), range(0, k * B), vTrans))
          expect(assembleState(chunks.slice(0, k)).equals(expected), `prefix of ${k} blocks`).to.equal(true)
        }
      })

      it('assembles into memory the caller gives, whatever was in it, with the same bytes', () => {
        const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), vTrans)))
        const chunks = range(0, 5).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))
        const scratch = Buffer.alloc(1 << 20, 0xa5) // dirty and larger than any of these states
        for (const k of [5, 2, 4]) {
          const expected = assembleState(chunks.slice(0, k))
          const into = assembleState(chunks.slice(0, k), undefined, () => scratch)
          expect(into.buffer === scratch.buffer, 'written in place').to.equal(true)
          expect(into.equals(expected), `prefix of ${k} blocks`).to.equal(true)
        }
      })

      it('assembles blocks and a shorter tail exactly as if the state had been saved whole', () => {
        const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), vTrans)))
        for (const k of [0, 2, 4]) {
          for (const len of [1, 5, B - 1]) {
            const chunks = range(0, k).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))
            const tail = parseChunk(cutCells(whole, k * B, len) as Buffer)
            expect(tail.blockTokens).to.equal(len)
            expect(tail.firstPos).to.equal(k * B)
            const n = k * B + len
            const expected = buildState(tokens.slice(0, n), gemmaLike(range(0, n), range(0, n), vTrans))
            expect(assembleState([...chunks, tail]).equals(expected), `${k} blocks + ${len}`).to.equal(true)
          }
        }
        // a tail ends a prefix: nothing may follow it
        const tail = parseChunk(cutCells(whole, 0, 5) as Buffer)
        expect(() => assembleState([tail, parseChunk(cutBlock(whole, 1, B) as Buffer)])).to.throw(ChunkMismatchError)
        expect(() => assembleState([parseChunk(cutBlock(whole, 0, B) as Buffer), tail])).to.throw(/starts at position 0, want 8/)
      })

      it('finds cells by position when the SWA cache holds them out of order', () => {
        // a sliding-window cache reuses cells: positions 32..39 sit before 16..31
        const rotated = parseState(buildState(tokens, gemmaLike(range(0, 40), [...range(32, 40), ...range(16, 32)], vTrans)))
        const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), vTrans)))
        for (const i of [2, 3, 4]) expect((cutBlock(rotated, i, B) as Buffer).equals(cutBlock(whole, i, B) as Buffer)).to.equal(true)
      })

      it('does not cut a block whose SWA cells already left the window', () => {
        const state = parseState(buildState(tokens, gemmaLike(range(0, 40), range(20, 40), vTrans)))
        expect(cutBlock(state, 1, B)).to.equal(undefined) // positions 8..15 gone from the SWA cache
        expect(cutBlock(state, 2, B)).to.equal(undefined) // 16..19 gone
        expect(cutBlock(state, 3, B)).to.be.instanceOf(Buffer)
      })
    })
  }

  describe('assembleState', () => {
    const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40))))
    const chunks = range(0, 5).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))

    it('refuses a gap in the prefix', () => {
      expect(() => assembleState([chunks[0], chunks[2]].map(c => c as typeof chunks[0]))).to.throw(/starts at position 16, want 8/)
    })

    it('refuses chunks of another layout than the context expects', () => {
      const other = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), false)))
      const foreign = parseChunk(cutBlock(other, 0, B) as Buffer)
      expect(() => assembleState([chunks[0] as typeof foreign], foreign.layout)).to.throw(/layout/)
    })
  })

  describe('StateAssembly (a state filled as its chunks arrive)', () => {
    for (const vTrans of [true, false]) {
      it(`gives the same bytes as assembleState whatever order chunks come in (v_trans ${String(vTrans)})`, () => {
        const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), vTrans)))
        const chunks = [...range(0, 4).map(i => parseChunk(cutBlock(whole, i, B) as Buffer)), parseChunk(cutCells(whole, 4 * B, 5) as Buffer)]
        const expected = assembleState(chunks)
        // chunks as a peer's frames may hold them: at odd offsets, where no typed view can be laid over them
        const odd = [...range(0, 4).map(i => cutBlock(whole, i, B) as Buffer), cutCells(whole, 4 * B, 5) as Buffer]
          .map(b => { const at = Buffer.alloc(b.length + 1); b.copy(at, 1); return parseChunk(at.subarray(1)) })
        expect(odd.map(c => c.caches[0]?.v[0]?.byteOffset)).to.satisfy((offsets: number[]) => offsets.every(o => o % 2 === 1))
        const sources = [chunks, chunks, odd]
        for (const [n, order] of [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]].entries()) {
          const from = sources[n] as ParsedChunk[]
          const assembly = new StateAssembly((chunks[0] as ParsedChunk).layout, chunks.map(c => c.blockTokens), n => Buffer.alloc(n, 0x5a))
          for (const i of order) {
            expect(assembly.complete).to.equal(false)
            assembly.place(i, from[i] as ParsedChunk)
          }
          expect(assembly.complete).to.equal(true)
          expect(assembly.state().equals(expected), `order ${order.join(',')}`).to.equal(true)
        }
      })
    }

    for (const vTrans of [true, false]) {
      it(`takes a prefix from a kept state and the rest from chunks, to the same bytes (v_trans ${String(vTrans)})`, () => {
        const many = range(100, 200)
        const whole = parseState(buildState(many, gemmaLike(range(0, 100), range(0, 100), vTrans)))
        const chunks = [...range(0, 12).map(i => parseChunk(cutBlock(whole, i, B) as Buffer)), parseChunk(cutCells(whole, 12 * B, 3) as Buffer)]
        const expected = assembleState(chunks)
        const layout = (chunks[0] as ParsedChunk).layout
        // the kept state of the first k blocks, as a node assembled it for an earlier prompt, or the one
        // it assembled for a longer prompt
        const cases = [1, 3, 11].flatMap(k => [[k, parseState(assembleState(chunks.slice(0, k)))], [k, whole]] as const)
        for (const [k, kept] of cases) {
          const assembly = new StateAssembly(layout, chunks.map(c => c.blockTokens), n => Buffer.alloc(n, 0x5a))
          assembly.placePrefix(k, kept, many)
          for (let i = k; i < chunks.length; i++) {
            expect(assembly.complete).to.equal(false)
            assembly.place(i, chunks[i] as ParsedChunk)
          }
          expect(assembly.complete).to.equal(true)
          expect(assembly.state().equals(expected), `prefix of ${k} from a state of ${kept.tokens.length}`).to.equal(true)
        }
      })
    }

    it('refuses a kept state that is not exactly the planned prefix of these tokens', () => {
      const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40))))
      const chunks = range(0, 4).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))
      const layout = (chunks[0] as ParsedChunk).layout
      const assembly = (): StateAssembly => new StateAssembly(layout, [B, B, B, B])
      const kept = parseState(assembleState(chunks.slice(0, 2)))
      expect(() => { assembly().placePrefix(3, kept, tokens) }).to.throw(ChunkMismatchError, /holds 16 positions, want 24/)
      expect(() => { assembly().placePrefix(2, kept, [...tokens.slice(0, 9), 7, ...tokens.slice(10)]) }).to.throw(ChunkMismatchError, /another token at position 9/)
      expect(() => { assembly().placePrefix(5, kept, tokens) }).to.throw(ChunkMismatchError, /does not fit/)
      const otherLayout = parseState(assembleState(range(0, 2).map(i => parseChunk(cutBlock(parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), false))), i, B) as Buffer))))
      expect(() => { assembly().placePrefix(2, otherLayout, tokens) }).to.throw(ChunkMismatchError, /another layout/)
      // a state llama.cpp saved itself: SWA cells reused out of position order
      const saved = parseState(buildState(tokens.slice(0, 16), gemmaLike(range(0, 16), [...range(8, 16), ...range(0, 8)])))
      expect(() => { assembly().placePrefix(2, saved, tokens) }).to.throw(ChunkMismatchError, /cell 0 has position 8/)
    })

    it('refuses a chunk that does not fit its entry, and a state with an entry missing', () => {
      const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40))))
      const chunks = range(0, 3).map(i => parseChunk(cutBlock(whole, i, B) as Buffer))
      const assembly = new StateAssembly((chunks[0] as ParsedChunk).layout, [B, B, B])
      expect(() => { assembly.place(1, chunks[2] as ParsedChunk) }).to.throw(ChunkMismatchError, /starts at position 16, want 8/)
      expect(() => { assembly.place(3, chunks[2] as ParsedChunk) }).to.throw(ChunkMismatchError, /not planned/)
      const other = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40), false)))
      expect(() => { assembly.place(0, parseChunk(cutBlock(other, 0, B) as Buffer)) }).to.throw(ChunkMismatchError, /layout/)
      const short = new StateAssembly((chunks[0] as ParsedChunk).layout, [B, 5])
      expect(() => { short.place(1, chunks[1] as ParsedChunk) }).to.throw(ChunkMismatchError, /holds 8 positions, want 5/)
      assembly.place(0, chunks[0] as ParsedChunk)
      assembly.place(2, chunks[2] as ParsedChunk)
      expect(() => assembly.state()).to.throw(ChunkMismatchError, /1 of 3 chunks are missing/)
    })
  })

  describe('parseChunk', () => {
    const whole = parseState(buildState(tokens, gemmaLike(range(0, 40), range(0, 40))))
    const chunk = cutBlock(whole, 1, B) as Buffer

    it('round-trips the block tokens and position', () => {
      const parsed = parseChunk(chunk)
      expect(parsed.firstPos).to.equal(8)
      expect(Array.from(parsed.tokens)).to.deep.equal(tokens.slice(8, 16))
    })

    it('rejects truncation, trailing bytes and a wrong cell position', () => {
      expect(() => parseChunk(chunk.subarray(0, chunk.length - 1))).to.throw().with.property('name', 'InvalidStateError')
      expect(() => parseChunk(Buffer.concat([chunk, Buffer.alloc(1)]))).to.throw(/trailing/)
      const moved = Buffer.from(chunk)
      const metaAt = 24 + B * 4 + 12 + 2 * 24 // header, tokens, cache header, 2 layer descriptors
      moved.writeInt32LE(9, metaAt)
      expect(() => parseChunk(moved)).to.throw(/position 9, want 8/)
    })
  })
})
