import '../../src/polyfill.js'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { RPC } from '@libp2p/gossipsub/message'
import { expect } from 'chai'
import { CatalogMessage } from '../../src/catalog/index.js'
import { encodeFrame } from '../../src/transfer/index.js'
import { FINGERPRINT, randomKey, startNode, stopAll, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

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

  it('rejects malformed catalogs, cuts off a peer that keeps sending them, and carries on', async () => {
    const a = await startNode()
    nodes.push(a)
    const good = await startNode({ peers: [a.addr] })
    nodes.push(good)
    const evil = await startNode({ peers: [a.addr] })
    nodes.push(evil)
    const key = randomKey()
    evil.store.put(key, new Uint8Array([1]))
    good.store.put(randomKey(), new Uint8Array([1]))
    await waitFor(() => a.node.catalog.mayHave(evil.node.peerId, key) && a.node.catalog.peers().length === 2)
    const held = a.node.catalog.peers().find((p) => p.peerId === evil.node.peerId.toString())
    const topic = a.node.catalog.topic
    const valid = {
      fingerprint: FINGERPRINT, seq: Date.now() * 2, entries: 1, bits: 64, hashes: 7, seed: 1, filter: new Uint8Array(8).fill(0xff),
      publisher: evil.node.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>
    }
    const malformed: Uint8Array[] = [
      Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), // not protobuf
      new Uint8Array(0),
      CatalogMessage.encode({ ...valid, fingerprint: 'ab'.repeat(32) }), // another model on our topic
      CatalogMessage.encode({ ...valid, filter: new Uint8Array(7) }), // filter shorter than its bits
      CatalogMessage.encode({ ...valid, bits: 63 }),
      CatalogMessage.encode({ ...valid, hashes: 0 }),
      CatalogMessage.encode({ ...valid, hashes: 1000 }),
      CatalogMessage.encode({ ...valid, seq: 0 }),
      CatalogMessage.encode({ ...valid, publisher: new Uint8Array(0) }) // names no publisher
    ]
    const pubsub = evil.node.libp2p.services.pubsub
    for (const [i, data] of malformed.entries()) {
      await pubsub.publish(topic, data)
      await waitFor(() => a.node.catalog.stats().rejected === i + 1, 10_000, `catalog ${i} rejected`)
      // judged one at a time: forgive the fault (two are tolerated, the third cuts the peer off)
      a.node.guard.pardon(evil.node.peerId)
    }
    // the forged "all ones" filter never replaced evil's real catalog
    expect(a.node.catalog.mayHave(evil.node.peerId, randomKey())).to.equal(false)
    expect(a.node.catalog.peers().find((p) => p.peerId === evil.node.peerId.toString())?.seq).to.equal(held?.seq)
    // and a later valid catalog is still accepted
    const later = randomKey()
    evil.store.put(later, new Uint8Array([2]))
    await waitFor(() => a.node.catalog.mayHave(evil.node.peerId, later))

    // three faults in a row: cut off, its catalog dropped, refused for a while; the others carry on
    for (const data of malformed.slice(0, 3)) await pubsub.publish(topic, data).catch(() => {})
    await waitFor(() => a.node.guard.isBanned(evil.node.peerId), 10_000, 'evil to be cut off')
    await waitFor(() => a.node.catalog.peers().every((p) => p.peerId !== evil.node.peerId.toString()), 10_000, 'evil\'s catalog to be dropped')
    expect(a.node.connectedPeers().map(String)).to.not.include(evil.node.peerId.toString())
    const fresh = randomKey()
    good.store.put(fresh, new Uint8Array([3]))
    await waitFor(() => a.node.catalog.mayHave(good.node.peerId, fresh))
  })

  it('cuts off at once a peer that sends a catalog over the size limit', async () => {
    const a = await startNode()
    nodes.push(a)
    const evil = await startNode({ peers: [a.addr] })
    nodes.push(evil)
    await waitFor(() => a.node.catalog.peers().length === 1)
    const bits = 8 * (1_048_576 + 8)
    await evil.node.libp2p.services.pubsub.publish(a.node.catalog.topic, CatalogMessage.encode({
      fingerprint: FINGERPRINT, seq: Date.now() * 2, entries: 1, bits, hashes: 7, seed: 1, filter: new Uint8Array(bits / 8),
      publisher: evil.node.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>
    }))
    await waitFor(() => a.node.guard.isBanned(evil.node.peerId), 10_000, 'evil to be cut off')
    expect(a.node.catalog.stats().rejected).to.equal(1)
  })

  describe('forgery', () => {
    /** a, a victim v, and an attacker m with a known private key, all connected to a */
    async function setup (): Promise<{ a: TestNode, v: TestNode, m: TestNode, mKey: PrivateKey }> {
      const a = await startNode()
      nodes.push(a)
      const v = await startNode({ peers: [a.addr] })
      nodes.push(v)
      const mKey = await generateKeyPair('Ed25519')
      const m = await startNode({ peers: [a.addr], privateKey: mKey })
      nodes.push(m)
      v.store.put(randomKey(), new Uint8Array([1]))
      m.store.put(randomKey(), new Uint8Array([1]))
      await waitFor(() => a.node.catalog.peers().length === 2)
      return { a, v, m, mKey }
    }

    const allOnes = (publisher: Uint8Array): Uint8Array => CatalogMessage.encode({
      fingerprint: FINGERPRINT, seq: Date.now() * 2, entries: 1_000_000, bits: 64, hashes: 7, seed: 1, filter: new Uint8Array(8).fill(0xff),
      publisher: publisher as Uint8Array<ArrayBuffer>
    })

    /** A gossipsub message as an attacker builds it: `from` any peer id, signed with `key`. */
    async function gossipMessage (topic: string, from: PeerId, key: PrivateKey, data: Uint8Array, withKey: boolean): Promise<RPC.Message> {
      const seqno = new Uint8Array(8)
      new DataView(seqno.buffer).setBigUint64(0, BigInt(Date.now()) * 1_000_000n)
      const unsigned: RPC.Message = { from: from.toMultihash().bytes, data, seqno, topic }
      const signature = await key.sign(Buffer.concat([Buffer.from('libp2p-pubsub:'), RPC.Message.encode(unsigned)]))
      return { ...unsigned, signature, key: withKey ? publicKeyToProtobuf(key.publicKey) : undefined }
    }

    it('rejects a catalog whose payload names another publisher than its signer', async () => {
      const { a, v, m } = await setup()
      const before = a.node.catalog.peers().find((p) => p.peerId === v.node.peerId.toString())
      // m signs (it can only sign as itself) a catalog that claims to be v's
      await m.node.libp2p.services.pubsub.publish(a.node.catalog.topic, allOnes(v.node.peerId.toMultihash().bytes))
      await waitFor(() => a.node.catalog.stats().rejected === 1)
      expect(a.node.catalog.mayHave(v.node.peerId, randomKey())).to.equal(false)
      expect(a.node.catalog.mayHave(m.node.peerId, randomKey())).to.equal(false)
      expect(a.node.catalog.peers().find((p) => p.peerId === v.node.peerId.toString())?.seq).to.equal(before?.seq)
    })

    it('never attributes a gossipsub message to a peer that did not sign it (StrictSign)', async () => {
      const { a, v, m, mKey } = await setup()
      const topic = a.node.catalog.topic
      const before = a.node.catalog.peers().find((p) => p.peerId === v.node.peerId.toString())
      // m speaks gossipsub to a directly, with messages claiming to be from v
      const stream = await m.node.libp2p.dialProtocol(a.node.peerId, '/meshsub/1.2.0')
      const forged = [
        await gossipMessage(topic, v.node.peerId, mKey, allOnes(v.node.peerId.toMultihash().bytes), true), // m's key attached
        await gossipMessage(topic, v.node.peerId, mKey, allOnes(v.node.peerId.toMultihash().bytes), false), // v's key implied by its id
        { from: v.node.peerId.toMultihash().bytes, data: allOnes(v.node.peerId.toMultihash().bytes), topic } // unsigned
      ]
      // then one honest message of m's own, to know when a has processed everything before it
      const marker = await gossipMessage(topic, m.node.peerId, mKey, CatalogMessage.encode({
        fingerprint: FINGERPRINT, seq: Date.now() * 3, entries: 0, bits: 64, hashes: 7, seed: 1, filter: new Uint8Array(8), publisher: m.node.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>
      }), true)
      for (const message of [...forged, marker]) stream.send(encodeFrame(RPC.encode({ subscriptions: [], messages: [message] })))
      await waitFor(() => a.node.catalog.peers().find((p) => p.peerId === m.node.peerId.toString())?.entries === 0, 10_000, 'the marker')
      expect(a.node.catalog.mayHave(v.node.peerId, randomKey())).to.equal(false)
      expect(a.node.catalog.peers().find((p) => p.peerId === v.node.peerId.toString())?.seq).to.equal(before?.seq)
      await stream.close().catch(() => {})
    })

    it('keeps no catalog of a peer it is not connected to, even a genuine one relayed by others', async () => {
      // a — b — c in a line: c's catalogs reach a only through b
      const a = await startNode()
      nodes.push(a)
      const b = await startNode({ peers: [a.addr] })
      nodes.push(b)
      const c = await startNode({ peers: [b.addr] })
      nodes.push(c)
      const key = randomKey()
      c.store.put(key, new Uint8Array([1]))
      await waitFor(() => b.node.catalog.mayHave(c.node.peerId, key))
      await waitFor(() => a.node.catalog.stats().ignored > 0, 15_000, 'c\'s relayed catalog to reach a')
      expect(a.node.catalog.mayHave(c.node.peerId, key)).to.equal(false)
      expect(a.node.catalog.stats().rejected).to.equal(0)
    })
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
