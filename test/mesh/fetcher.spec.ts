import '../../src/polyfill.js'
import { createHash } from 'node:crypto'
import { expect } from 'chai'
import { encodeFrame, KV_PROTOCOL, KvHeader, KvRequest, MAX_REQUEST_BYTES } from '../../src/transfer/index.js'
import { equalBytes, payload, randomKey, readFirstFrame, startNode, stopAll, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

const SIZE = 590_488

describe('mesh fetcher', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  let keys: string[]

  /** a client and `n` servers, all connected to the client */
  async function mesh (n: number, fetcher?: { timeoutMs?: number }): Promise<[TestNode, ...TestNode[]]> {
    const servers: TestNode[] = []
    for (let i = 0; i < n; i++) {
      const s = await startNode()
      nodes.push(s)
      servers.push(s)
    }
    const client = await startNode({ peers: servers.map((s) => s.addr), fetcher })
    nodes.push(client)
    return [client, ...servers]
  }

  function hold (node: TestNode, from: number, to: number): void {
    for (let i = from; i < to; i++) node.store.put(keys[i] as string, payload(i, SIZE))
  }

  async function known (client: TestNode, server: TestNode, from: number, to: number): Promise<void> {
    await waitFor(() => keys.slice(from, to).every((k) => client.node.catalog.mayHave(server.node.peerId, k)), 15_000, 'catalog')
  }

  function expectChunks (chunks: Uint8Array[], from: number, count: number): void {
    expect(chunks).to.have.length(count)
    chunks.forEach((c, i) => { expect(equalBytes(c, payload(from + i, SIZE))).to.equal(true, `chunk ${from + i}`) })
  }

  beforeEach(() => { keys = Array.from({ length: 12 }, randomKey) })
  afterEach(async () => { await stopAll(nodes) })

  it('fetches a continuation split across two peers, in parallel, and asks nobody else', async () => {
    const [client, b, c, bystander] = await mesh(3) as [TestNode, TestNode, TestNode, TestNode]
    hold(b, 0, 5)
    hold(c, 5, 10)
    bystander.store.put(randomKey(), payload(99, 100))
    await known(client, b, 0, 5)
    await known(client, c, 5, 10)
    await waitFor(() => client.node.catalog.peers().length === 3)

    const arrived = new Map<number, Uint8Array>()
    const result = await client.node.fetcher.fetchContinuation(keys.slice(0, 10), 2, { onChunk: (i, bytes) => { arrived.set(i, bytes) } })
    expectChunks(result.chunks, 2, 8)
    expect(result.bytes).to.equal(8 * SIZE)
    // each chunk was handed over as it arrived (the pipeline assembles the state meanwhile), by its index in keys
    expect([...arrived.keys()].sort((x, y) => x - y)).to.deep.equal([2, 3, 4, 5, 6, 7, 8, 9])
    result.chunks.forEach((c, k) => { expect(Buffer.from(arrived.get(2 + k) as Uint8Array).equals(Buffer.from(c))).to.equal(true) })
    expect(result.peers.sort()).to.deep.equal([b.node.peerId.toString(), c.node.peerId.toString()].sort())
    expect(b.node.transfer.stats().keysRequested).to.equal(3)
    expect(c.node.transfer.stats().keysRequested).to.equal(5)
    // the bystander's catalog covers none of these keys: it never saw a request
    expect(bystander.node.transfer.stats().requestsServed).to.equal(0)
    expect(client.node.fetcher.stats()).to.include({ requests: 2, emptyRequests: 0, chunks: 8 })
  })

  it('stops at the first key nobody has, without asking for what follows', async () => {
    const [client, b] = await mesh(1) as [TestNode, TestNode]
    hold(b, 0, 4)
    hold(b, 5, 12)
    await known(client, b, 5, 12)
    const result = await client.node.fetcher.fetchContinuation(keys, 0, {})
    expectChunks(result.chunks, 0, 4)
    expect(b.node.transfer.stats().keysRequested).to.equal(4)
    expect(client.node.fetcher.stats().requests).to.equal(1)
  })

  it('returns nothing, asking nobody, when no catalog has the first key', async () => {
    const [client, b] = await mesh(1) as [TestNode, TestNode]
    hold(b, 1, 12)
    await known(client, b, 1, 12)
    const result = await client.node.fetcher.fetchContinuation(keys, 0, {})
    expect(result).to.deep.equal({ chunks: [], bytes: 0, peers: [], requests: 0, emptyRequests: 0 })
    expect(b.node.transfer.stats().requestsServed).to.equal(0)
  })

  it('records a false positive and fetches the key from another candidate', async () => {
    const [client, b, c] = await mesh(2) as [TestNode, TestNode, TestNode]
    hold(b, 0, 6)
    hold(c, 3, 10)
    await known(client, b, 0, 6)
    await known(client, c, 3, 10)
    // b loses keys[4] without telling anyone: its catalog still says yes
    b.store.chunks.delete(keys[4] as string)

    const result = await client.node.fetcher.fetchContinuation(keys.slice(0, 10), 0, {})
    expectChunks(result.chunks, 0, 10)
    expect(client.node.catalog.stats().falsePositives).to.equal(1)
    expect(client.node.catalog.peers().find((p) => p.peerId === b.node.peerId.toString())?.falsePositives).to.equal(1)
    expect(client.node.fetcher.stats().falsePositives).to.equal(1)
    expect(c.node.transfer.stats().keysRequested).to.equal(5) // keys[6..10) then keys[4]
  })

  it('drops a peer that sends a corrupt chunk and re-plans with another', async () => {
    const [client, b, c] = await mesh(2) as [TestNode, TestNode, TestNode]
    hold(b, 0, 10)
    hold(c, 2, 10)
    await known(client, b, 0, 10)
    await known(client, c, 2, 10)
    // b answers keys[2] with bytes that do not match the hash it declares
    await b.node.libp2p.handle(KV_PROTOCOL, async (stream) => {
      const frame = await readFirstFrame(stream, MAX_REQUEST_BYTES)
      for (const key of KvRequest.decode(frame ?? new Uint8Array()).keys) {
        const hex = Buffer.from(key).toString('hex')
        const right = payload(keys.indexOf(hex), SIZE)
        const sent = hex === keys[2] ? payload(1000, SIZE) : right
        stream.send(encodeFrame(KvHeader.encode({ status: KvHeader.Status.FOUND, key, size: SIZE, sha256: createHash('sha256').update(right).digest() as Uint8Array<ArrayBuffer> })))
        stream.send(encodeFrame(sent))
      }
      await stream.close().catch(() => {})
    }, { force: true })

    const result = await client.node.fetcher.fetchContinuation(keys.slice(0, 10), 0, {})
    expectChunks(result.chunks, 0, 10)
    expect(client.node.transfer.stats().verificationFailures).to.equal(1)
    expect(client.node.fetcher.stats().failedRequests).to.equal(1)
    expect(result.peers.sort()).to.deep.equal([b.node.peerId.toString(), c.node.peerId.toString()].sort())
  })

  it('returns within its deadline when a peer never answers', async () => {
    const [client, b] = await mesh(1, { timeoutMs: 500 }) as [TestNode, TestNode]
    hold(b, 0, 3)
    await known(client, b, 0, 3)
    let opened = 0
    await b.node.libp2p.handle(KV_PROTOCOL, () => { opened++ }, { force: true }) // reads nothing, answers nothing
    const result = await client.node.fetcher.fetchContinuation(keys.slice(0, 3), 0, {})
    expect(result.chunks).to.have.length(0)
    expect(opened).to.equal(1)
    expect(client.node.fetcher.stats()).to.include({ deadlines: 1, emptyRequests: 1 })
  })

  it('takes a fractional deadline (the pipeline\'s compute-time estimate) and fetches within it', async () => {
    const [client, b] = await mesh(1) as [TestNode, TestNode]
    hold(b, 0, 3)
    await known(client, b, 0, 3)
    const result = await client.node.fetcher.fetchContinuation(keys.slice(0, 3), 0, { deadlineMs: 5_000.37 })
    expectChunks(result.chunks, 0, 3)
  })

  it('lets a fetch that keeps delivering run past its first deadline, and cuts one that lags behind its credit', async () => {
    const [client, b] = await mesh(1) as [TestNode, TestNode]
    hold(b, 0, 8)
    await known(client, b, 0, 8)
    b.store.getDelayMs = 150
    // every chunk takes ~150 ms and earns 1 s: all 8 arrive, though the first allowance is 250 ms
    const steady = await client.node.fetcher.fetchContinuation(keys.slice(0, 8), 0, { deadlineMs: 250, creditMsPerChunk: 1_000 })
    expectChunks(steady.chunks, 0, 8)
    expect(client.node.fetcher.stats().deadlines).to.equal(0)
    // every chunk earns 10 ms: the fetch falls behind and stops with what arrived
    const lagging = await client.node.fetcher.fetchContinuation(keys.slice(0, 8), 0, { deadlineMs: 250, creditMsPerChunk: 10 })
    expect(lagging.chunks.length).to.be.below(8)
    expectChunks(lagging.chunks, 0, lagging.chunks.length)
    expect(client.node.fetcher.stats().deadlines).to.equal(1)
  })

  it('throws when the caller aborts', async () => {
    const [client, b] = await mesh(1) as [TestNode, TestNode]
    hold(b, 0, 3)
    await known(client, b, 0, 3)
    await b.node.libp2p.handle(KV_PROTOCOL, () => {}, { force: true })
    const controller = new AbortController()
    const pending = client.node.fetcher.fetchContinuation(keys.slice(0, 3), 0, { signal: controller.signal })
    controller.abort(new Error('user gave up'))
    let error: Error | undefined
    try { await pending } catch (err) { error = err as Error }
    expect(error?.message).to.equal('user gave up')
  })
})
