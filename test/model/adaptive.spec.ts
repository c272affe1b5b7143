import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { expect } from 'chai'
import { openLocalNode } from '../../src/node/local.js'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'
import type { LocalNode } from '../../src/node/local.js'
import type { RemoteChunkSource, RemoteFetchResult } from '../../src/pipeline/pipeline.js'

/** A mesh stand-in: peers claim every block, at a chosen transfer speed; records what was asked. */
function fakeRemote (bytesPerMs: number | undefined): RemoteChunkSource & { calls: Array<{ from: number, deadlineMs?: number }> } {
  const calls: Array<{ from: number, deadlineMs?: number }> = []
  return {
    calls,
    claimable: (keys, from) => keys.length - from,
    throughput: () => bytesPerMs,
    fetchContinuation: async (_keys, from, options): Promise<RemoteFetchResult> => {
      calls.push({ from, deadlineMs: options.deadlineMs })
      return { chunks: [], bytes: 0, peers: [], requests: 1, emptyRequests: 1 }
    }
  }
}

describe('adaptive fetching', function () {
  this.timeout(600_000)
  let dir: string
  let node: LocalNode

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pm-adaptive-'))
    node = await openLocalNode({ model: await testModel('tiny-gemma3'), cacheDir: dir, threads: 2, contextSize: 1024, logger: defaultLogger() })
  })
  afterEach(async () => {
    await node.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('asks peers while their link speed is unknown, but never for longer than computing would take', async () => {
    const remote = fakeRemote(undefined)
    node.pipeline.remote = remote
    await node.pipeline.run(`First: ${LONG_PROMPT}`, { maxTokens: 1, noCache: true }) // no cache: nothing asked
    expect(remote.calls).to.have.length(0)
    const first = await node.pipeline.run(`Second: ${LONG_PROMPT}`, { maxTokens: 1 })
    expect(remote.calls).to.have.length(1)
    expect(remote.calls[0]?.deadlineMs, 'the prefill rate is known after one query').to.be.a('number').and.greaterThan(0)
    expect(first.cache.fetchSkipped).to.equal(false)
    expect(first.tokens).to.have.length(1)
  })

  it('computes instead of fetching when the measured link is slower than the measured prefill', async () => {
    await node.pipeline.run(`Warm: ${LONG_PROMPT}`, { maxTokens: 1, noCache: true })
    const slow = fakeRemote(0.001) // 1 byte/ms: hours for a few chunks
    node.pipeline.remote = slow
    const res = await node.pipeline.run(`Slow: ${LONG_PROMPT}`, { maxTokens: 1, noCache: false })
    expect(slow.calls).to.have.length(0)
    expect(res.cache.fetchSkipped).to.equal(true)
    expect(res.cache.source).to.equal('none')

    // a link that delivers nothing before the deadline: the next query computes, the one after tries
    // again (a stall must not turn fetching off for good), and after a second stall it waits longer
    const stalled = fakeRemote(undefined)
    stalled.fetchContinuation = async (_keys, from, options) => {
      stalled.calls.push({ from, deadlineMs: options.deadlineMs })
      await new Promise(resolve => setTimeout(resolve, options.deadlineMs ?? 0))
      return { chunks: [], bytes: 0, peers: [], requests: 1, emptyRequests: 1 }
    }
    node.pipeline.remote = stalled
    const skipped: boolean[] = []
    for (const name of ['one', 'two', 'three', 'four', 'five', 'six', 'seven']) {
      skipped.push((await node.pipeline.run(`Stalled ${name}: ${LONG_PROMPT}`, { maxTokens: 1 })).cache.fetchSkipped)
    }
    expect(skipped).to.deep.equal([false, true, false, true, true, true, false])
    expect(stalled.calls).to.have.length(3)

    const fast = fakeRemote(1e9)
    node.pipeline.remote = fast
    await node.pipeline.run(`Fast: ${LONG_PROMPT}`, { maxTokens: 1 })
    expect(fast.calls).to.have.length(1)
  })
})
