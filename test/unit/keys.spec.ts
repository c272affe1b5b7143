import { createHash } from 'node:crypto'
import { expect } from 'chai'
import { blockKeys, FINAL_EVAL_TOKENS, reusableBlocks, tailKey } from '../../src/cache/keys.js'
import { ReuseChain } from '../../src/pipeline/chain.js'
import { range } from '../fixtures/states.js'

const fp = 'ab'.repeat(32)
const other = 'cd'.repeat(32)

describe('chunk keys', () => {
  it('follow the documented scheme, so every node and process derives the same keys', () => {
    // key_0 = SHA-256(fingerprint ‖ i32le tokens[0..B)), key_1 = SHA-256(key_0 ‖ tokens[B..2B))
    const le = (tokens: number[]): Buffer => Buffer.concat(tokens.map(t => { const b = Buffer.alloc(4); b.writeInt32LE(t); return b }))
    const k0 = createHash('sha256').update(Buffer.from(fp, 'hex')).update(le(range(0, 32))).digest()
    const k1 = createHash('sha256').update(k0).update(le(range(32, 64))).digest()
    expect(blockKeys(fp, range(0, 64), 32)).to.deep.equal([k0.toString('hex'), k1.toString('hex')])
    expect(blockKeys(fp, range(0, 64), 32)[0]).to.equal('1154e821e1abedbd19948caa06a15ed13ed4d9c0826b45bf2e79aa31a9cfcf30')
  })

  it('chain: a key depends on every earlier token', () => {
    const a = blockKeys(fp, range(0, 96), 32)
    const changed = range(0, 96); changed[3] = 999
    const b = blockKeys(fp, changed, 32)
    expect(b[1]).to.not.equal(a[1])
    expect(b[2]).to.not.equal(a[2])
  })

  it('prompts sharing a prefix share its keys and only those', () => {
    const a = blockKeys(fp, [...range(0, 64), ...range(500, 532)], 32)
    const b = blockKeys(fp, [...range(0, 64), ...range(600, 632)], 32)
    expect(b.slice(0, 2)).to.deep.equal(a.slice(0, 2))
    expect(b[2]).to.not.equal(a[2])
  })

  it('differ between models', () => {
    expect(blockKeys(other, range(0, 32), 32)[0]).to.not.equal(blockKeys(fp, range(0, 32), 32)[0])
  })

  it('name a tail after its whole blocks: chained, marked, never equal to a block key', () => {
    const tokens = range(0, 100)
    const keys = blockKeys(fp, tokens, 32)
    const tail = tailKey(fp, keys[2], tokens, 96, 99)
    expect(tail).to.have.length(64)
    expect(tail).to.equal(tailKey(fp, keys[2], [...tokens], 96, 99))
    expect(tail).to.not.equal(tailKey(fp, keys[1], tokens, 96, 99)) // depends on everything before
    expect(tail).to.not.equal(tailKey(fp, keys[2], tokens, 96, 98))
    // a 32-token tail hashes the same tokens as block 0 but is not its key
    expect(tailKey(fp, undefined, tokens, 0, 32)).to.not.equal(keys[0])
  })

  it('a reuse chain lists whole blocks, then the tail up to the last two tokens', () => {
    const tokens = range(0, 100)
    const chain = new ReuseChain(fp, tokens, 32, true)
    expect(chain.reusable).to.equal(3)
    expect(chain.keys).to.deep.equal([...blockKeys(fp, tokens, 32), tailKey(fp, blockKeys(fp, tokens, 32)[2], tokens, 96, 98)])
    expect([0, 1, 3, 4].map(n => chain.covered(n))).to.deep.equal([0, 32, 96, 98])
    expect(chain.span(3)).to.deep.equal({ first: 96, count: 2 })
    expect(chain.tail).to.deep.equal({ first: 96, count: 2 })
    // the last two tokens start a block: no tail, and the block before them is the last reusable one
    const aligned = new ReuseChain(fp, range(0, 98), 32, true)
    expect(aligned.tailKey).to.equal(undefined)
    expect(aligned.length).to.equal(3)
    expect(aligned.covered(3)).to.equal(96)
    const short = new ReuseChain(fp, range(0, 10), 32, true)
    expect(short.keys).to.deep.equal([tailKey(fp, undefined, range(0, 10), 0, 8)])
    expect(new ReuseChain(fp, tokens, 32, false).length).to.equal(0)
  })

  it('cover whole blocks only, and leave the last FINAL_EVAL_TOKENS tokens to evaluate', () => {
    expect(FINAL_EVAL_TOKENS).to.equal(2)
    expect(blockKeys(fp, range(0, 63), 32)).to.have.length(1)
    expect(reusableBlocks(65, 32)).to.equal(1)
    expect(reusableBlocks(66, 32)).to.equal(2)
    expect(reusableBlocks(2, 32)).to.equal(0)
    expect(reusableBlocks(1, 32)).to.equal(0)
  })
})
