import { existsSync } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { expect } from 'chai'
import { blockKeys } from '../../src/cache/keys.js'
import { openLocalNode } from '../../src/node/local.js'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'
import type { LocalNode } from '../../src/node/local.js'
import type { RemoteChunkSource, RemoteFetchResult } from '../../src/pipeline/pipeline.js'

type Delivery = 'as they come, last first' | 'only at the end' | 'fewer than claimed'

/**
 * A peer stand-in serving another node's store: claims what that store holds and delivers it the way a
 * mesh fetch may (chunks reported as they arrive, in any order; a source that only returns them at the
 * end; a fetch cut short by its deadline).
 */
function peerServing (peer: LocalNode, delivery: Delivery): RemoteChunkSource {
  const held = (keys: string[], from: number): number => {
    let n = 0
    while (from + n < keys.length && peer.store.has(keys[from + n] as string)) n++
    return n
  }
  return {
    claimable: held,
    throughput: () => undefined,
    fetchContinuation: async (keys, from, options): Promise<RemoteFetchResult> => {
      const n = delivery === 'fewer than claimed' ? Math.max(0, held(keys, from) - 1) : held(keys, from)
      const chunks: Uint8Array[] = []
      for (let i = 0; i < n; i++) chunks.push(await peer.store.get(keys[from + i] as string) as Buffer)
      if (delivery === 'as they come, last first') for (let i = n - 1; i >= 0; i--) options.onChunk?.(from + i, chunks[i] as Uint8Array)
      return { chunks, bytes: chunks.reduce((b, c) => b + c.byteLength, 0), peers: ['peer'], requests: 1, emptyRequests: n === 0 ? 1 : 0 }
    }
  }
}

describe('restoring a prefix while it is fetched', function () {
  this.timeout(600_000)
  const shared = `${LONG_PROMPT} ${LONG_PROMPT}`
  const asked = `${shared} Which planet has the most moons? A. Earth B. Saturn C. Mars D. Venus Answer:`
  let dir: string
  let peer: LocalNode
  let node: LocalNode

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pm-streaming-'))
    const model = await testModel('tiny-gemma3')
    peer = await openLocalNode({ model, cacheDir: join(dir, 'peer'), threads: 1, contextSize: 2048, logger: defaultLogger() })
    await peer.pipeline.run(asked, { maxTokens: 1 }) // the peer holds the whole prompt
  })
  after(async () => {
    await peer?.close()
    await rm(dir, { recursive: true, force: true })
  })
  beforeEach(async () => {
    node = await openLocalNode({ model: await testModel('tiny-gemma3'), cacheDir: join(dir, `node-${Math.random()}`), threads: 1, contextSize: 2048, logger: defaultLogger() })
  })
  afterEach(async () => { await node?.close() })

  for (const delivery of ['as they come, last first', 'only at the end', 'fewer than claimed'] as Delivery[]) {
    it(`answers like a cold run from a local prefix and fetched chunks delivered ${delivery}`, async () => {
      const cold = await node.pipeline.run(asked, { maxTokens: 12, noCache: true })
      // this node holds the shared part (another question after it), the peer the rest
      await node.pipeline.run(`${shared} Which planet is closest to the sun? Answer:`, { maxTokens: 1 })
      node.pipeline.remote = peerServing(peer, delivery)
      const hit = await node.pipeline.run(asked, { maxTokens: 12 })
      expect(hit.cache.source).to.equal('mixed')
      expect(hit.cache.remoteTokens).to.be.greaterThan(0)
      expect(hit.tokens, 'greedy answer, token for token').to.deep.equal(cold.tokens)
      expect(hit.text).to.equal(cold.text)
      // a fetch that brought everything planned leaves a complete state to load as it is; a short one is reassembled
      expect(hit.timings.assembledAsArrived).to.equal(delivery !== 'fewer than claimed')
      if (delivery === 'fewer than claimed') expect(hit.cache.reusedTokens).to.be.lessThan(hit.promptTokens - 2)
      else expect(hit.cache.reusedTokens).to.equal(hit.promptTokens - 2)
    })
  }

  const keptCases: Array<['intact' | 'holding another token', Delivery]> = [['intact', 'as they come, last first'], ['holding another token', 'as they come, last first'], ['intact', 'fewer than claimed']]
  for (const [kept, delivery] of keptCases) {
    it(`answers like a cold run when the local part's kept state is ${kept} and fetched chunks come ${delivery}`, async () => {
      const cold = await node.pipeline.run(asked, { maxTokens: 12, noCache: true })
      node.pipeline.remote = peerServing(peer, 'as they come, last first')
      // the shared part fetched for another question: restored, so its state is kept (and its chunks stored)
      const other = await node.pipeline.run(`${shared} Which planet is closest to the sun? Answer:`, { maxTokens: 1 })
      expect(other.cache.source).to.equal('remote')
      const keys = blockKeys(node.engine.fingerprint, node.engine.tokenize(asked), node.pipeline.blockTokens)
      const prefixKey = keys[other.cache.reusedTokens / node.pipeline.blockTokens - 1] as string
      const file = node.engine.states.beginning(prefixKey)?.path
      expect(file, 'the shared part\'s state is kept').to.be.a('string')
      if (kept === 'holding another token') {
        // a state that still parses: only the token check can tell it is not this prefix
        const fh = await open(file as string, 'r+')
        await fh.write(Buffer.from([1, 0, 0, 0]), 0, 4, 12 + 3 * 4)
        await fh.close()
      }
      node.pipeline.remote = peerServing(peer, delivery)
      const hit = await node.pipeline.run(asked, { maxTokens: 12 })
      expect(hit.cache.source).to.equal('mixed')
      expect(hit.cache.localTokens).to.equal(other.cache.reusedTokens)
      // a short fetch leaves the assembly incomplete: the local chunks are read and assembled after all
      expect(hit.timings.localFromKeptState).to.equal(kept === 'intact' && delivery !== 'fewer than claimed')
      expect(hit.tokens, 'greedy answer, token for token').to.deep.equal(cold.tokens)
      if (kept !== 'intact') expect(existsSync(file as string), 'a bad kept state is dropped').to.equal(false)
    })
  }

  it('takes the local part out of the state kept when this node computed a prompt that starts with it', async () => {
    const cold = await node.pipeline.run(asked, { maxTokens: 12, noCache: true })
    // computed here, from nothing
    const other = await node.pipeline.run(`${shared} Which planet is closest to the sun? Answer:`, { maxTokens: 1 })
    expect(other.cache.source).to.equal('none')
    node.pipeline.remote = peerServing(peer, 'as they come, last first')
    const hit = await node.pipeline.run(asked, { maxTokens: 12 })
    expect(hit.cache.source).to.equal('mixed')
    expect(hit.cache.localTokens).to.be.greaterThan(0)
    expect(hit.timings.localFromKeptState).to.equal(true)
    expect(hit.tokens, 'greedy answer, token for token').to.deep.equal(cold.tokens)
  })

  it('takes the local part out of the kept state of a longer prompt that starts with it', async () => {
    node.pipeline.remote = peerServing(peer, 'as they come, last first')
    // the peer's whole prompt, restored: its kept state covers every prefix of it
    const first = await node.pipeline.run(asked, { maxTokens: 1 })
    expect(first.cache.source).to.equal('remote')
    const keys = blockKeys(node.engine.fingerprint, node.engine.tokenize(asked), node.pipeline.blockTokens)
    // another question after the shared part, whose own blocks the peer holds
    const next = `${shared} Which planet is closest to the sun? Answer:`
    await peer.pipeline.run(next, { maxTokens: 1 })
    const coldNext = await node.pipeline.run(next, { maxTokens: 12, noCache: true })
    const hit = await node.pipeline.run(next, { maxTokens: 12 })
    expect(hit.cache.source).to.equal('mixed')
    expect(hit.cache.localTokens).to.be.greaterThan(0)
    expect(hit.cache.localTokens, 'a prefix shorter than the kept state').to.be.lessThan(first.cache.reusedTokens)
    expect(node.engine.states.beginning(keys[hit.cache.localTokens / node.pipeline.blockTokens - 1] as string)).to.not.equal(undefined)
    expect(hit.timings.localFromKeptState).to.equal(true)
    expect(hit.tokens, 'greedy answer, token for token').to.deep.equal(coldNext.tokens)
  })
})
