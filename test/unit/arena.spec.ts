import { expect } from 'chai'
import { Arena } from '../../src/pipeline/arena.js'

describe('arena (restore scratch)', () => {
  it('hands out disjoint memory within a query and the same memory again after a reset', () => {
    const arena = new Arena(1 << 20)
    // first query: nothing kept yet, so fresh buffers (big enough not to come from Node's shared pool)
    const a = arena.alloc(10_000)
    const b = arena.alloc(30_000)
    expect(a.buffer === b.buffer).to.equal(false)
    arena.reset()
    expect(arena.size).to.equal(40_000)
    // second query: both come from the kept buffer, without overlapping
    const c = arena.alloc(10_000)
    const d = arena.alloc(30_000)
    expect(c.buffer === d.buffer).to.equal(true)
    c.fill(1); d.fill(2)
    expect(c.every(x => x === 1) && d.every(x => x === 2)).to.equal(true)
    // more than kept: the excess is fresh, and the arena grows for next time
    const e = arena.alloc(5_000)
    expect(e.buffer === c.buffer).to.equal(false)
    arena.reset()
    expect(arena.size).to.equal(45_000)
  })

  it('does not keep more than its limit', () => {
    const arena = new Arena(1000)
    arena.alloc(800)
    arena.alloc(800)
    arena.reset()
    expect(arena.size).to.equal(0)
    expect(arena.alloc(1600).length).to.equal(1600)
  })
})
