import { expect } from 'chai'
import fc from 'fast-check'
import { assembleState, cutBlock, layoutOf, parseChunk, parseState } from '../../src/engine/state-codec.js'
import { buildState, range } from '../fixtures/states.js'
import { fuzzBytes, outcome, params, RUNS, Tally } from './fuzz.js'
import type { ParsedChunk, StateLayout } from '../../src/engine/state-codec.js'
import type { FakeCache } from '../fixtures/states.js'

const B = 8
const TYPED = ['InvalidStateError', 'UnsupportedStateLayoutError']

/** States of the shapes the codec knows: iSWA (two caches) with V transposed or not, and one cache. */
function states (): Buffer[] {
  const tokens = range(1000, 1032)
  const shapes: FakeCache[][] = [
    [{ vTrans: true, layers: 2, kRowBytes: 16, v: 8, positions: range(0, 32) }, { vTrans: true, layers: 3, kRowBytes: 16, v: 8, positions: range(0, 32) }],
    [{ vTrans: false, layers: 2, kRowBytes: 12, v: 12, positions: range(0, 32) }, { vTrans: false, layers: 1, kRowBytes: 12, v: 12, positions: [...range(16, 32), ...range(8, 16)] }],
    [{ vTrans: true, layers: 1, kRowBytes: 8, v: 4, positions: range(0, 32) }]
  ]
  return shapes.map((caches) => buildState(tokens, caches))
}

describe('fuzz: state codec (src/engine/state-codec.ts)', function () {
  this.timeout(600_000)
  const tally = new Tally()
  const bases = states()
  const parsed = bases.map((b) => parseState(b))
  const chunks: Buffer[] = parsed.flatMap((s) => range(0, 4).map((i) => cutBlock(s, i, B)).filter((c): c is Buffer => c != null))
  const layouts: StateLayout[] = parsed.map(layoutOf)

  after(() => { for (const line of tally.lines()) console.log(`      ${line}`) }) // eslint-disable-line no-console

  it(`parseState: ${RUNS} random and mutated states give a state or a typed error`, () => {
    fc.assert(fc.property(fuzzBytes(bases, 2048), (bytes) => {
      tally.add('parseState', outcome(() => parseState(bytes), TYPED))
    }), params)
    expect(tally.total('parseState')).to.equal(RUNS)
  })

  it(`parseChunk: ${RUNS} random and mutated chunks give a chunk or a typed error`, () => {
    fc.assert(fc.property(fuzzBytes(chunks, 2048), (bytes) => {
      tally.add('parseChunk', outcome(() => parseChunk(bytes), TYPED))
    }), params)
  })

  it(`assembleState: ${RUNS} sequences of valid and mutated chunks assemble into a state that parses, or fail typed`, () => {
    // what parses of the mutated chunks joins the valid ones: layouts, positions and sizes then disagree
    const pool: ParsedChunk[] = chunks.map((c) => parseChunk(c))
    const extra = fc.sample(fuzzBytes(chunks, 0), { numRuns: 4_000, seed: params.seed })
    for (const bytes of extra) {
      try { pool.push(parseChunk(bytes)) } catch {}
    }
    const pick = fc.tuple(
      fc.array(fc.nat({ max: pool.length - 1 }), { minLength: 0, maxLength: 6 }),
      fc.option(fc.nat({ max: layouts.length - 1 }), { nil: undefined })
    )
    fc.assert(fc.property(pick, ([indices, layout]) => {
      const selected = indices.map((i) => pool[i] as ParsedChunk)
      const result = outcome(() => {
        const state = assembleState(selected, layout == null ? undefined : layouts[layout])
        // anything it assembles must be a complete, valid state: llama.cpp aborts on a truncated one
        const back = parseState(state)
        expect(Array.from(back.tokens)).to.deep.equal(selected.flatMap((c) => Array.from(c.tokens)))
      }, ['ChunkMismatchError'])
      tally.add('assembleState', result)
    }), params)
    console.log(`      assembleState pool: ${pool.length} parsed chunks (${chunks.length} valid, ${pool.length - chunks.length} that survived mutation)`) // eslint-disable-line no-console
  })
})
