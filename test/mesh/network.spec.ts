import '../../src/polyfill.js'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { ChunkStore } from '../../src/cache/chunk-store.js'
import { createMeshNode, PEER_KEY_FILE } from '../../src/network/index.js'
import { equalBytes, FINGERPRINT, MemoryStore, payload, randomKey, startNode, stopAll, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

describe('mesh node', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []
  let dir: string

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-mesh-')) })
  afterEach(async () => {
    await stopAll(nodes)
    await rm(dir, { recursive: true, force: true })
  })

  describe('identity', () => {
    it('creates an Ed25519 key once in <dataDir>/peer-key and reuses it', async () => {
      const first = await startNode({ dataDir: dir })
      nodes.push(first)
      const id = first.node.peerId.toString()
      expect(first.node.peerId.type).to.equal('Ed25519')
      expect((await stat(join(dir, PEER_KEY_FILE))).mode & 0o777).to.equal(0o600)
      await first.node.stop()
      const again = await startNode({ dataDir: dir })
      nodes.push(again)
      expect(again.node.peerId.toString()).to.equal(id)
    })

    it('refuses a peer-key file that is not a key rather than replacing it', async () => {
      await writeFile(join(dir, PEER_KEY_FILE), 'not a key')
      let error: Error | undefined
      try { nodes.push(await startNode({ dataDir: dir })) } catch (err) { error = err as Error }
      expect(error?.name).to.equal('PeerKeyError')
    })
  })

  describe('static peers', () => {
    it('dials them at start and redials one that drops and comes back', async () => {
      const serverDir = join(dir, 'server')
      const first = await startNode({ dataDir: serverDir })
      nodes.push(first)
      const addr = first.addr // includes /p2p/<peer id>
      const client = await startNode({ peers: [addr], dialer: { redialBaseMs: 100, redialMaxMs: 500 } })
      nodes.push(client)
      await waitFor(() => client.node.connectedPeers().some((p) => p.equals(first.node.peerId)))

      await first.node.stop()
      await waitFor(() => client.node.connectedPeers().length === 0)
      // the same peer comes back on the same address
      const back = await startNode({ dataDir: serverDir, listen: [addr.split('/p2p/')[0] as string], store: new MemoryStore() })
      nodes.push(back)
      await waitFor(() => client.node.connectedPeers().some((p) => p.equals(back.node.peerId)))
      const status = client.node.libp2p.services.dialer.staticPeers()
      expect(status).to.have.length(1)
      expect(status[0]).to.include({ connected: true, peerId: back.node.peerId.toString() })
    })

    it('rejects an invalid static peer address', async () => {
      let error: Error | undefined
      try { nodes.push(await startNode({ peers: ['not a multiaddr'] })) } catch (err) { error = err as Error }
      expect(error?.name).to.equal('InvalidPeerAddressError')
    })
  })

  it('wires to a ChunkStore: catalog and transfer follow the store', async () => {
    const stores = await Promise.all(['a', 'b'].map(async (name) => ChunkStore.open({ dir: join(dir, name) })))
    const [storeA, storeB] = stores as [ChunkStore, ChunkStore]
    const a = await createMeshNode({ modelFingerprint: FINGERPRINT, store: storeA, dataDir: join(dir, 'a'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    nodes.push({ node: a, store: new MemoryStore(), addr: '' })
    const b = await createMeshNode({ modelFingerprint: FINGERPRINT, store: storeB, dataDir: join(dir, 'b'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, peers: a.getMultiaddrs().map(String) })
    nodes.push({ node: b, store: new MemoryStore(), addr: '' })
    const keys = [randomKey(), randomKey(), randomKey()]
    for (const [i, key] of keys.entries()) await storeA.put(key, payload(i, 590_488))
    await waitFor(() => keys.every((k) => b.catalog.mayHave(a.peerId, k)))
    const result = await b.fetcher.fetchContinuation(keys, 0, {})
    expect(result.chunks).to.have.length(3)
    result.chunks.forEach((c, i) => { expect(equalBytes(c, payload(i, 590_488))).to.equal(true) })
    for (const [i, key] of keys.entries()) await storeB.put(key, result.chunks[i] as Uint8Array)
    await waitFor(() => keys.every((k) => a.catalog.mayHave(b.peerId, k)))
  })

  it('stop and start are idempotent', async () => {
    const a = await startNode()
    nodes.push(a)
    await a.node.start()
    await a.node.stop()
    await a.node.stop()
    await a.node.start()
    expect(a.node.libp2p.status).to.equal('started')
    await a.node.stop()
  })
})
