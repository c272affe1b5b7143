import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { resolveProfile } from '../../testnet/profiles.js'
import { machineInfo, renderMarkdown, writeReport } from '../../testnet/report.js'
import { passOrder } from '../../testnet/runner.js'
import { calibrationFromReport } from '../../testnet/sim-runner.js'
import { addTotals, quantile, summarize } from '../../testnet/summary.js'
import { buildWorkload } from '../../testnet/workload.js'
import type { TestnetReport } from '../../testnet/report.js'
import type { QueryRecord } from '../../testnet/summary.js'

function record (strategy: QueryRecord['strategy'], index: number, ttftMs: number, tokens: number[], extra: Partial<QueryRecord> = {}): QueryRecord {
  return {
    strategy, index, node: index % 2, promptTokens: 100, ttftMs, ttltMs: ttftMs + 500, reusedTokens: 0, localTokens: 0, remoteTokens: 0,
    source: 'none', bytesFetched: 0, peers: 0, requests: 0, emptyRequests: 0, requestsFrom: 'answer', tokens, timings: {}, ...extra
  }
}

describe('testnet report', () => {
  it('summarizes per strategy: quantiles, reductions against none, hit rates, exact matches per prompt', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).to.equal(2.5)
    expect(quantile([10], 0.95)).to.equal(10)
    const records = [
      record('none', 0, 1000, [1, 2]), record('none', 1, 3000, [3, 4]),
      record('catalog', 0, 1000, [1, 2]), record('catalog', 1, 100, [3, 5], { reusedTokens: 64, source: 'remote', requests: 2, emptyRequests: 1, bytesFetched: 1e6 })
    ]
    const s = summarize(records, ['none', 'catalog'])
    expect(s.none?.ttftMs.mean).to.equal(2000)
    expect(s.catalog?.ttftMs.mean).to.equal(550)
    expect(s.catalog?.ttftReductionPct).to.equal(72.5)
    expect(s.catalog?.hitRate).to.equal(0.5)
    expect(s.catalog?.tokenHitRate).to.equal(0.32)
    expect(s.catalog?.requests).to.equal(2)
    expect(s.catalog?.wastedRequests).to.equal(1)
    expect(s.exactMatches?.allEqual).to.equal(false)
    expect(s.exactMatches?.strategies.catalog).to.deep.include({ compared: 2, equal: 1, mismatched: [1], byIndex: [true, false] })
  })

  it('passes run the strategies forwards, then backwards, and answers are compared within a pass', () => {
    expect(passOrder(['none', 'local', 'catalog'], 2).map(x => `${x.pass}:${x.strategy}`))
      .to.deep.equal(['0:none', '0:local', '0:catalog', '1:catalog', '1:local', '1:none'])
    expect(passOrder(['local', 'catalog'], 1)).to.have.length(2)
    const records = [
      record('none', 0, 1000, [1, 2], { pass: 0 }), record('catalog', 0, 100, [1, 2], { pass: 0 }),
      record('catalog', 0, 300, [1, 3], { pass: 1 }), record('none', 0, 3000, [1, 3], { pass: 1 }),
      record('none', 1, 1000, [4], { pass: 0 }), record('catalog', 1, 100, [4], { pass: 0 }),
      record('none', 1, 1000, [4], { pass: 1 }), record('catalog', 1, 100, [5], { pass: 1 })
    ]
    const s = summarize(records, ['none', 'catalog'])
    // prompt 0 differs between the passes but each catalog answer equals none's of its pass; prompt 1 differs in pass 1
    expect(s.exactMatches?.strategies.catalog).to.deep.include({ compared: 4, equal: 3, mismatched: [1], byIndex: [true, false] })
    expect(s.catalog?.queries).to.equal(4)
    expect(s.catalog?.ttftMs.mean).to.equal(150)
    const totals = { fetchRequests: 2, fetchRequestsWasted: 0, kvRequestsServed: 2, kvBytesServed: 10, catalogPublished: 5, catalogReceived: 15, catalogFalsePositives: 1 }
    expect(addTotals(totals, { ...totals, kvWireBytesServed: 8 })).to.deep.equal({ ...totals, fetchRequests: 4, kvRequestsServed: 4, kvBytesServed: 20, kvWireBytesServed: 8, catalogPublished: 10, catalogReceived: 30, catalogFalsePositives: 2 })
  })

  it('rounds ask every prompt again, each on a node that has not asked it, and are summarized per round', async () => {
    const w = await buildWorkload({ queries: 6, nodes: 3, rounds: 3 })
    expect(w.queries).to.have.length(18)
    expect(w.rounds).to.equal(3)
    for (const q of w.queries) {
      const first = w.queries[q.firstAsk]
      expect(first?.round).to.equal(0)
      expect(q.prompt).to.equal(first?.prompt)
      expect(q.round).to.equal(Math.floor(q.index / 6))
    }
    for (let i = 0; i < 6; i++) expect(new Set([0, 1, 2].map(r => w.queries[i + 6 * r]?.node)).size).to.equal(3)
    let error: Error | undefined
    try { await buildWorkload({ queries: 6, nodes: 2, rounds: 3 }) } catch (err) { error = err as Error }
    expect(error?.message).to.match(/--rounds 3 needs at least 3 nodes/)

    const records = [
      record('none', 0, 1000, [1]), record('none', 1, 1000, [2], { round: 1 }),
      record('catalog', 0, 500, [1], { reusedTokens: 32, source: 'remote' }), record('catalog', 1, 100, [2], { round: 1, reusedTokens: 96, source: 'remote' })
    ]
    const s = summarize(records, ['none', 'catalog'])
    expect(s.catalog?.byRound?.map(x => x.ttftReductionPct)).to.deep.equal([50, 90])
    expect(s.catalog?.byRound?.[1]).to.deep.include({ round: 1, queries: 1, hitRate: 1, tokenHitRate: 0.96 })
    expect(s.catalog?.ttftReductionPct).to.equal(70)
  })

  it('labels a simulation as such in every output', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pm-testnet-report-'))
    try {
      const workload = await buildWorkload({ queries: 2, nodes: 2 })
      const report: TestnetReport = {
        kind: 'promptmesh-testnet',
        version: 1,
        runId: 'abc123',
        startedAt: new Date().toISOString(),
        finishedAt: new Date().toISOString(),
        durationS: 1,
        header: {
          profile: resolveProfile('pi-zero-2w'),
          mode: 'simulation',
          modeLabel: 'SIMULATION of 2 nodes',
          nodes: 2,
          model: { label: 'test' },
          strategies: ['none', 'catalog'],
          workload: { kind: workload.kind, source: workload.source, queries: 2, subjects: workload.subjects, skippedSubjects: [] },
          maxTokens: 4,
          calibration: {
            threads: 1, blockTokens: 32, promptTokens: 400, promptChars: 1200, charsPerToken: 3, iterations: [], cpuLimit: 'none',
            unthrottled: { prefillTokPerS: 500, decodeTokPerS: 50, ttftMs: 800, ttltMs: 900, cpuMsPerToken: 2, coresUsed: 1 }
          },
          limits: { cpu: 'simulated', link: 'simulated' },
          machine: machineInfo(),
          concurrency: 'one at a time',
          notes: []
        },
        queries: [record('none', 0, 1000, []), record('catalog', 0, 100, [])],
        summary: summarize([record('none', 0, 1000, []), record('catalog', 0, 100, [])], ['none', 'catalog'], {}, { compareTokens: false })
      }
      await writeReport(dir, report)
      expect(renderMarkdown(report)).to.match(/^# .*\(SIMULATION\)/)
      expect(await readFile(join(dir, 'report.md'), 'utf8')).to.include('**SIMULATION of 2 nodes**')
      expect(await readFile(join(dir, 'ttft-bar.svg'), 'utf8')).to.include('SIMULATION')
      expect(await readFile(join(dir, 'ttft-cdf.svg'), 'utf8')).to.include('SIMULATION')
      const json = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'))
      expect(json.header.mode).to.equal('simulation')
      expect(json.queries).to.have.length(2)
      // a report's calibration feeds a later simulation
      expect((await calibrationFromReport(join(dir, 'report.json'))).unthrottled.prefillTokPerS).to.equal(500)
      await writeFile(join(dir, 'bad.json'), '{}')
      const err = await calibrationFromReport(join(dir, 'bad.json')).then(() => undefined, (e: Error) => e)
      expect(err?.message).to.match(/not a testnet report/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
