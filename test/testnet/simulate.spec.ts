import { expect } from 'chai'
import { simulate } from '../../testnet/simulate.js'
import { buildWorkload } from '../../testnet/workload.js'
import type { SimTimings } from '../../testnet/simulate.js'

/** Gemma-3-270M-like numbers on a Pi-class device. */
const PI: SimTimings = { prefillTokPerS: 50, decodeTokPerS: 5, bytesPerToken: 18_461, charsPerToken: 2.5, blockTokens: 32, restoreMsPerBlock: 5 }
const strategies = ['none', 'local', 'broadcast', 'catalog'] as const

describe('testnet simulation', () => {
  it('catalog asks only peers that hold the chunks; broadcast wastes requests that grow with the mesh', async () => {
    const wasted: number[] = []
    for (const nodes of [10, 60]) {
      const workload = await buildWorkload({ queries: nodes * 3, nodes })
      const { summary } = simulate({ nodes, queries: workload.queries, strategies: [...strategies], timings: PI, linkMbit: 25, requestOverheadMs: 15, maxTokens: 16 })
      const catalog = summary.catalog
      const broadcast = summary.broadcast
      expect(catalog?.hitRate).to.be.greaterThan(summary.local?.hitRate ?? 1)
      expect(catalog?.wastedRequests).to.equal(0)
      expect(catalog?.requests).to.be.greaterThan(0)
      expect(catalog?.ttftReductionPct).to.be.greaterThan(50)
      expect(broadcast?.wastedRequests).to.be.greaterThan(0)
      expect(catalog?.mesh?.catalogPublished).to.be.greaterThan(0)
      expect(summary.none?.hitRate).to.equal(0)
      wasted.push((broadcast?.wastedRequests ?? 0) / (broadcast?.queries ?? 1))
    }
    expect(wasted[1]).to.be.greaterThan(wasted[0] as number)
  })

  it('computes locally instead of fetching when the link is slower than the CPU (adaptive fetching)', async () => {
    const workload = await buildWorkload({ queries: 24, nodes: 4 })
    const fast: SimTimings = { ...PI, prefillTokPerS: 1_000 }
    const { summary } = simulate({ nodes: 4, queries: workload.queries, strategies: ['local', 'catalog'], timings: fast, linkMbit: 2, requestOverheadMs: 15, maxTokens: 16 })
    expect(summary.catalog?.bytesFetched).to.equal(0)
    expect(summary.catalog?.fetchSkipped).to.be.greaterThan(0)
    expect((summary.catalog?.ttftMs.mean ?? Infinity) / (summary.local?.ttftMs.mean ?? 1)).to.be.at.most(1.02)
  })

  it('repeated prompts (rounds) find the whole prompt in the mesh and save more than first asks', async () => {
    const workload = await buildWorkload({ queries: 12, nodes: 4, rounds: 2 })
    const { summary } = simulate({ nodes: 4, queries: workload.queries, strategies: ['none', 'catalog'], timings: PI, linkMbit: 25, requestOverheadMs: 15, maxTokens: 16 })
    const [first, repeat] = summary.catalog?.byRound ?? []
    expect(first?.queries).to.equal(12)
    expect(repeat?.queries).to.equal(12)
    expect(repeat?.hitRate).to.equal(1)
    // every complete block but the last partial one: above 90 % of the prompt tokens
    expect(repeat?.tokenHitRate).to.be.greaterThan(0.9)
    expect(repeat?.tokenHitRate).to.be.greaterThan(first?.tokenHitRate ?? 1)
    expect(repeat?.ttftReductionPct).to.be.greaterThan(first?.ttftReductionPct ?? 100)
    expect(summary.none?.byRound?.[1]?.hitRate).to.equal(0)
  })

  it('is deterministic', async () => {
    const workload = await buildWorkload({ queries: 40, nodes: 20 })
    const run = (): unknown => simulate({ nodes: 20, queries: workload.queries, strategies: [...strategies], timings: PI, linkMbit: 25, requestOverheadMs: 15, maxTokens: 8 }).summary
    expect(run()).to.deep.equal(run())
  })
})
