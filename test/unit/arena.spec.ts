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
    // straight to its limit: growing query by query would leave a garbage buffer behind each time
    expect(arena.size).to.equal(1 << 20)
    // second query: all of it comes from the kept buffer, without overlapping
    const c = arena.alloc(10_000)
    const d = arena.alloc(30_000)
    const e = arena.alloc(5_000)
    expect(c.buffer === d.buffer && d.buffer === e.buffer).to.equal(true)
    c.fill(1); d.fill(2); e.fill(3)
    expect(c.every(x => x === 1) && d.every(x => x === 2) && e.every(x => x === 3)).to.equal(true)
    // beyond the limit: fresh memory, and the arena stays at its limit
    const f = arena.alloc(1 << 20)
    expect(f.buffer === c.buffer).to.equal(false)
    arena.reset()
    expect(arena.size).to.equal(1 << 20)
  })

  it('does not keep more than its limit', () => {
    // sizes above Node's pooled allocations (4 KB), so that buffer identity tells where memory came from
    const arena = new Arena(10_000)
    arena.alloc(8_000)
    arena.alloc(8_000)
    arena.reset()
    expect(arena.size).to.equal(10_000)
    const a = arena.alloc(8_000)
    const b = arena.alloc(8_000)
    expect(a.buffer === b.buffer, 'the second does not fit: fresh').to.equal(false)
    expect(b.length).to.equal(8_000)
  })
})
