import '../../src/polyfill.js'
import { expect } from 'chai'
import { CatalogMessage } from '../../src/catalog/index.js'
import { FINGERPRINT, randomKey, startNode, stopAll, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

describe('catalog', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []

  afterEach(async () => { await stopAll(nodes) })

  /** three nodes in a full mesh (b and c dial a; c dials b), each holding its own keys */
  async function threeNodes (keysEach = 5): Promise<{ a: TestNode, b: TestNode, c: TestNode, keys: string[][] }> {
    const keys = [0, 1, 2].map(() => Array.from({ length: keysEach }, randomKey))
    const a = await startNode()
    nodes.push(a)
    const b = await startNode({ peers: [a.addr] })
    nodes.push(b)
    const c = await startNode({ peers: [a.addr, b.addr] })
    nodes.push(c)
    ;[a, b, c].forEach((n, i) => { for (const k of keys[i] as string[]) n.store.put(k, new Uint8Array([i])) })
    return { a, b, c, keys }
  }

  async function exchanged (all: TestNode[]): Promise<void> {
    await waitFor(() => all.every((n) => n.node.catalog.peers().length === all.length - 1))
  }

  it('exchanges catalogs between three nodes and answers peersWith', async () => {
    const { a, b, c, keys } = await threeNodes()
    const [ka, kb, kc] = keys as [string[], string[], string[]]
    // stores were filled after start: wait until every node knows every other node's keys
    await waitFor(() => ka.every((k) => b.node.catalog.mayHave(a.node.peerId, k) && c.node.catalog.mayHave(a.node.peerId, k)) &&
      kb.every((k) => a.node.catalog.mayHave(b.node.peerId, k) && c.node.catalog.mayHave(b.node.peerId, k)) &&
      kc.every((k) => a.node.catalog.mayHave(c.node.peerId, k) && b.node.catalog.mayHave(c.node.peerId, k)))

    for (const k of ka) expect(c.node.catalog.peersWith(k).map(String)).to.deep.equal([a.node.peerId.toString()])
    for (const k of kb) expect(a.node.catalog.peersWith(k).map(String)).to.deep.equal([b.node.peerId.toString()])
    // a key on two nodes is found on both
    b.store.put(kc[0] as string, new Uint8Array([9]))
    await waitFor(() => a.node.catalog.peersWith(kc[0] as string).length === 2)
    expect(a.node.catalog.peersWith(kc[0] as string).map(String).sort()).to.deep.equal([b.node.peerId.toString(), c.node.peerId.toString()].sort())
    // nobody has a fresh key (≈1 % false positives per peer: use several)
    const misses = Array.from({ length: 20 }, randomKey).filter((k) => a.node.catalog.peersWith(k).length === 0)
    expect(misses.length).to.be.greaterThan(15)
    expect(a.node.catalog.mayHave(a.node.peerId, ka[0] as string)).to.equal(false, 'no catalog of ourselves')

    const info = a.node.catalog.peers().find((p) => p.peerId === b.node.peerId.toString())
    expect(info?.entries).to.equal(6)
    expect(info?.seq).to.be.a('number')
    expect(a.node.catalog.stats().published).to.be.greaterThan(0)
    expect(a.node.catalog.stats().received).to.be.greaterThan(0)
    expect(a.node.catalog.stats().rejected).to.equal(0)
  })

  it('propagates a key added later and emits catalog:update', async () => {
    const { a, b, c } = await threeNodes()
    await exchanged([a, b, c])
    const updates: string[] = []
    a.node.catalog.addEventListener('catalog:update', (evt) => { updates.push(evt.detail.peerId.toString()) })
    const later = randomKey()
    expect(a.node.catalog.peersWith(later)).to.have.length(0)
    c.store.put(later, new Uint8Array([1, 2, 3]))
    await waitFor(() => a.node.catalog.mayHave(c.node.peerId, later) && b.node.catalog.mayHave(c.node.peerId, later))
    expect(updates).to.include(c.node.peerId.toString())
  })

  it('expires the catalog of a peer that stops', async () => {
    const { a, b, c } = await threeNodes()
    await exchanged([a, b, c])
    const expired: string[] = []
    a.node.catalog.addEventListener('catalog:expire', (evt) => { expired.push(evt.detail.peerId.toString()) })
    await c.node.stop()
    await waitFor(() => a.node.catalog.peers().length === 1 && b.node.catalog.peers().length === 1)
    expect(a.node.catalog.peers()[0]?.peerId).to.equal(b.node.peerId.toString())
    expect(expired).to.deep.equal([c.node.peerId.toString()])
  })

  it('expires a peer that stays connected but goes silent', async () => {
    const a = await startNode({ catalog: { publishIntervalMs: 200 } })
    nodes.push(a)
    const b = await startNode({ peers: [a.addr], catalog: { publishIntervalMs: 200 } })
    nodes.push(b)
    await exchanged([a, b])
    const expired: string[] = []
    a.node.catalog.addEventListener('catalog:expire', (evt) => { expired.push(evt.detail.reason) })
    // b's catalog service stops publishing without unsubscribing: the connection and the
    // subscription stay, its catalogs stop coming
    await (b.node.libp2p.services.catalog as unknown as { stop: () => Promise<void> }).stop()
    await waitFor(() => a.node.catalog.peers().length === 0)
    expect(expired).to.deep.equal(['silent'])
    expect(a.node.connectedPeers().map(String)).to.include(b.node.peerId.toString())
  })

  it('drops the catalog of a peer that unsubscribes', async () => {
    const a = await startNode()
    nodes.push(a)
    const b = await startNode({ peers: [a.addr] })
    nodes.push(b)
    await exchanged([a, b])
    b.node.libp2p.services.pubsub.unsubscribe(b.node.catalog.topic)
    await waitFor(() => a.node.catalog.peers().length === 0)
  })

  it('ignores malformed and forged catalog messages without crashing', async () => {
    const a = await startNode()
    nodes.push(a)
    const evil = await startNode({ peers: [a.addr] })
    nodes.push(evil)
    const key = randomKey()
    evil.store.put(key, new Uint8Array([1]))
    await waitFor(() => a.node.catalog.mayHave(evil.node.peerId, key))
    const good = a.node.catalog.peers()[0]
    const topic = a.node.catalog.topic
    const valid = { fingerprint: FINGERPRINT, seq: Date.now() * 2, entries: 1, bits: 64, hashes: 7, seed: 1, filter: new Uint8Array(8).fill(0xff) }
    const bad: Uint8Array[] = [
      Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), // not protobuf
      new Uint8Array(0),
      CatalogMessage.encode({ ...valid, fingerprint: 'ab'.repeat(32) }), // another model on our topic
      CatalogMessage.encode({ ...valid, filter: new Uint8Array(7) }), // filter shorter than its bits
      CatalogMessage.encode({ ...valid, bits: 63 }),
      CatalogMessage.encode({ ...valid, hashes: 0 }),
      CatalogMessage.encode({ ...valid, hashes: 1000 }),
      CatalogMessage.encode({ ...valid, bits: 8 * (1_048_576 + 8), filter: new Uint8Array(1_048_576 + 8) }), // over the size bound
      CatalogMessage.encode({ ...valid, seq: 0 })
    ]
    const pubsub = evil.node.libp2p.services.pubsub
    for (const data of bad) await pubsub.publish(topic, data)
    await waitFor(() => a.node.catalog.stats().rejected === bad.length)
    // the forged "all ones" filter never replaced evil's real catalog
    expect(a.node.catalog.mayHave(evil.node.peerId, randomKey())).to.equal(false)
    expect(a.node.catalog.peers()[0]?.seq).to.equal(good?.seq)
    // and the node still works: a later valid catalog is accepted
    const later = randomKey()
    evil.store.put(later, new Uint8Array([2]))
    await waitFor(() => a.node.catalog.mayHave(evil.node.peerId, later))
  })

  it('publishes without error before anyone subscribed', async () => {
    const a = await startNode()
    nodes.push(a)
    a.store.put(randomKey(), new Uint8Array([1]))
    await a.node.catalog.publish()
    await a.node.catalog.publish()
    expect(a.node.catalog.stats().published).to.be.greaterThanOrEqual(2)
  })
})
