import '../../src/polyfill.js'
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { expect } from 'chai'
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { swarmKeyCommand } from '../../src/cli/swarm-key.js'
import { generateSwarmKey, parseSwarmKey, PeerGuard, readSwarmKey, swarmKeyPermissionWarning } from '../../src/network/index.js'
import { encodeFrame, KV_PROTOCOL, KvHeader, KvRequest, MAX_HEADER_BYTES, MAX_REQUEST_BYTES } from '../../src/transfer/index.js'
import { collect, FINGERPRINT, payload, randomKey, readFirstFrame, readFrames, startNode, stopAll, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

const PEER_A = peerIdFromString('12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5')
const PEER_B = peerIdFromString('12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8')

describe('peer guard', () => {
  it('refills each peer\'s token bucket at its rate, up to its burst', () => {
    let now = 0
    const guard = new PeerGuard({ rates: { req: { perSecond: 10, burst: 3 } }, now: () => now })
    expect([1, 2, 3, 4].map(() => guard.admit(PEER_A, 'req'))).to.deep.equal([true, true, true, false])
    expect(guard.admit(PEER_B, 'req')).to.equal(true) // buckets are per peer
    now += 100 // one token back
    expect(guard.admit(PEER_A, 'req')).to.equal(true)
    expect(guard.admit(PEER_A, 'req')).to.equal(false)
    now += 60_000
    expect([1, 2, 3, 4].map(() => guard.admit(PEER_A, 'req'))).to.deep.equal([true, true, true, false]) // never more than the burst
    expect(guard.admit(PEER_A, 'other')).to.equal(true) // kinds without a rate are not limited
    expect(guard.stats().rateLimited).to.equal(3)
  })

  it('cuts a peer off at once for a limit, after the tolerated faults otherwise, and lets it back after the ban', async () => {
    let now = 0
    const hungUp: string[] = []
    const guard = new PeerGuard({ banMs: 30_000, maxFaults: 2, faultWindowMs: 10_000, now: () => now })
    guard.setHangUp(async (peer) => { hungUp.push(peer.toString()) })
    guard.report(PEER_A, 'limit', 'frame too large')
    expect(guard.isBanned(PEER_A)).to.equal(true)
    expect(guard.admit(PEER_A, 'anything')).to.equal(false)
    expect(await guard.gater().denyInboundEncryptedConnection?.(PEER_A, undefined as never)).to.equal(true)
    expect(await guard.gater().denyDialPeer?.(PEER_B)).to.equal(false)
    guard.report(PEER_B, 'fault', 'garbage')
    guard.report(PEER_B, 'fault', 'garbage')
    expect(guard.isBanned(PEER_B)).to.equal(false)
    now += 20_000 // old faults leave the window
    guard.report(PEER_B, 'fault', 'garbage')
    guard.report(PEER_B, 'fault', 'garbage')
    expect(guard.isBanned(PEER_B)).to.equal(false)
    guard.report(PEER_B, 'fault', 'garbage')
    expect(guard.isBanned(PEER_B)).to.equal(true)
    expect(hungUp).to.deep.equal([PEER_A.toString(), PEER_B.toString()])
    expect(guard.banned().map((b) => b.peerId).sort()).to.deep.equal([PEER_A.toString(), PEER_B.toString()].sort())
    now += 30_001
    expect(guard.isBanned(PEER_A)).to.equal(false)
    expect(guard.isBanned(PEER_B)).to.equal(false)
    expect(guard.stats()).to.include({ cutOff: 2, banned: 0, limitOffences: 1, faultOffences: 5, refusedConnections: 1 })
  })

  it('checks swarm keys strictly', () => {
    const key = generateSwarmKey()
    expect(parseSwarmKey(key)).to.deep.equal(parseSwarmKey(new TextEncoder().encode(`\n${new TextDecoder().decode(key).toUpperCase().replace('/KEY/SWARM/PSK/1.0.0/', '/key/swarm/psk/1.0.0/').replace('/BASE16/', '/base16/')}\r\n`)))
    for (const bad of ['', '/key/swarm/psk/1.0.0/\n/base16/\nabc', '/key/swarm/psk/1.0.0/\n/base64/\n' + 'a'.repeat(64), 'a'.repeat(64), '/key/swarm/psk/2.0.0/\n/base16/\n' + 'a'.repeat(64)]) {
      expect(() => parseSwarmKey(new TextEncoder().encode(bad)), bad).to.throw().with.property('name', 'SwarmKeyError')
    }
  })
})

describe('promptmesh swarm-key generate', () => {
  it('writes a new key, mode 0600, that start accepts, and never overwrites a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pm-swarm-key-'))
    try {
      const out = join(dir, 'swarm.key')
      const write = process.stderr.write
      process.stderr.write = () => true
      try {
        expect(await swarmKeyCommand(['generate', '--out', out])).to.equal(0)
      } finally {
        process.stderr.write = write
      }
      expect((await stat(out)).mode & 0o777).to.equal(0o600)
      expect(new TextDecoder().decode(await readSwarmKey(out))).to.equal((await readFile(out, 'utf8')).trim())
      const before = await readFile(out)
      const err = await swarmKeyCommand(['generate', '--out', out]).then(() => undefined, (e: Error) => e)
      expect(err?.name).to.equal('SwarmKeyError')
      expect(await readFile(out)).to.deep.equal(before)
      expect(await swarmKeyCommand(['nonsense']).catch((e: Error) => e.name)).to.equal('UsageError')
      expect(await readSwarmKey(join(dir, 'missing')).then(() => 'read', (e: Error) => e.name)).to.equal('SwarmKeyError')
      // a key others may read is a key others may use: start warns
      expect(await swarmKeyPermissionWarning(out)).to.equal(undefined)
      await chmod(out, 0o644)
      expect(await swarmKeyPermissionWarning(out)).to.match(/readable by every user \(mode 0644\).*chmod 600/)
      await chmod(out, 0o640)
      expect(await swarmKeyPermissionWarning(out)).to.match(/readable by its group/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('mesh under attack', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  afterEach(async () => { await stopAll(nodes) })

  describe('private mesh (swarm key)', () => {
    it('nodes with the key share chunks; a node without it, or with another key, cannot connect', async () => {
      const swarmKey = generateSwarmKey()
      const a = await startNode({ swarmKey })
      nodes.push(a)
      const b = await startNode({ swarmKey, peers: [a.addr] })
      nodes.push(b)
      const key = randomKey()
      a.store.put(key, payload(1, 100_000))
      await waitFor(() => b.node.catalog.mayHave(a.node.peerId, key))
      const [got] = await collect(b.node.transfer.fetch(a.node.peerId, [key]))
      expect(got?.status).to.equal('found')
      expect(a.node.privateMesh).to.equal(true)

      for (const outsider of [await startNode(), await startNode({ swarmKey: generateSwarmKey() })]) {
        nodes.push(outsider)
        const dialed = await outsider.node.libp2p.dial(a.node.getMultiaddrs(), { signal: AbortSignal.timeout(3_000) }).then(() => true, () => false)
        expect(dialed, 'dial').to.equal(false)
        const fetched = await collect(outsider.node.transfer.fetch(a.node.peerId, [key])).then(() => true, () => false)
        expect(fetched, 'fetch').to.equal(false)
        // and the other way round
        const back = await a.node.libp2p.dial(outsider.node.getMultiaddrs(), { signal: AbortSignal.timeout(3_000) }).then(() => true, () => false)
        expect(back, 'dial back').to.equal(false)
      }
      expect(a.node.connectedPeers().map(String)).to.deep.equal([b.node.peerId.toString()])
    })

    it('refuses a malformed swarm key at start', async () => {
      const err = await startNode({ swarmKey: new TextEncoder().encode('not a key') }).then(() => undefined, (e: Error) => e)
      expect(err?.name).to.equal('SwarmKeyError')
    })
  })

  describe('kv request limits', () => {
    it('cuts off a peer that floods requests beyond its rate, and keeps serving the others', async () => {
      // a budget of 10 requests that refills slowly, so that the test does not depend on its own speed
      const server = await startNode({ guard: { rates: { 'kv-request': { perSecond: 0.01, burst: 10 } } } })
      nodes.push(server)
      const flooder = await startNode({ peers: [server.addr] })
      nodes.push(flooder)
      const honest = await startNode({ peers: [server.addr] })
      nodes.push(honest)
      const key = randomKey()
      server.store.put(key, payload(2, 10_000))
      const request = encodeFrame(KvRequest.encode({ fingerprint: FINGERPRINT, keys: [Buffer.from(randomKey(), 'hex')] })).subarray()
      // bogus requests as fast as streams open: keys nobody has
      const statuses: string[] = []
      for (let i = 0; i < 30 && !server.node.guard.isBanned(flooder.node.peerId); i++) {
        try {
          const stream = await flooder.node.libp2p.dialProtocol(server.node.peerId, KV_PROTOCOL)
          stream.send(request)
          await stream.close()
          const header = await readFirstFrame(stream, MAX_HEADER_BYTES, AbortSignal.timeout(5_000))
          statuses.push(header == null ? 'none' : KvHeader.decode(header).status)
        } catch {
          statuses.push('refused')
        }
      }
      expect(statuses.slice(0, 10)).to.deep.equal(new Array(10).fill(KvHeader.Status.NOT_FOUND))
      expect(statuses[10]).to.equal(KvHeader.Status.BUSY)
      expect(server.node.guard.isBanned(flooder.node.peerId)).to.equal(true)
      expect(server.node.transfer.stats().limitOffences).to.equal(1)
      await waitFor(() => !server.node.connectedPeers().some((p) => p.equals(flooder.node.peerId)), 10_000, 'the flooder to be disconnected')
      const [answer] = await collect(honest.node.transfer.fetch(server.node.peerId, [key]))
      expect(answer?.status).to.equal('found')
    })

    it('cuts off a peer with more requests in flight than allowed', async () => {
      const server = await startNode({ transfer: { maxServesPerPeer: 2 } })
      nodes.push(server)
      const client = await startNode({ peers: [server.addr] })
      nodes.push(client)
      const key = randomKey()
      server.store.put(key, payload(3, 1000))
      let release!: () => void
      const held = new Promise<void>((resolve) => { release = resolve })
      const get = server.store.get.bind(server.store)
      let reads = 0
      server.store.get = async (k: string) => { reads++; await held; return await get(k) }
      await waitFor(() => server.node.connectedPeers().length === 1)
      const inFlight = [0, 1].map(async () => await collect(client.node.transfer.fetch(server.node.peerId, [key])).catch((e: Error) => e))
      await waitFor(() => reads === 2)
      const third = await collect(client.node.transfer.fetch(server.node.peerId, [key])).catch((e: Error) => e)
      expect((third as Error & { status?: string }).status).to.equal('busy')
      await waitFor(() => server.node.guard.isBanned(client.node.peerId), 10_000, 'the client to be cut off')
      release()
      await Promise.all(inFlight)
    })

    it('a client cuts off a server whose chunks are not the ones their keys name', async () => {
      const keys = Array.from({ length: 6 }, randomKey)
      const right = new Map(keys.map((k, i) => [k, payload(i, 20_000)]))
      // the liar claims all six (so it is asked first: the longest run), the honest peer the first three
      const liar = await startNode()
      nodes.push(liar)
      const honest = await startNode()
      nodes.push(honest)
      keys.forEach((k, i) => {
        if (i < 3) honest.store.put(k, right.get(k) as Uint8Array)
        liar.store.put(k, payload(1000 + i, 20_000)) // bytes whose SHA-256 it declares truly, but another chunk
      })
      const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
      const client = await startNode({
        peers: [liar.addr, honest.addr],
        fetcher: { verify: (all, i, bytes) => sha(bytes) === sha(right.get(all[i] as string) as Uint8Array) ? undefined : 'not the chunk for this key' }
      })
      nodes.push(client)
      await waitFor(() => keys.every((k, i) => client.node.catalog.peersWith(k).length === (i < 3 ? 2 : 1)))
      for (let round = 1; round <= 3; round++) {
        const result = await client.node.fetcher.fetchContinuation(keys, 0, {})
        expect(result.chunks.map(sha)).to.deep.equal(keys.slice(0, 3).map((k) => sha(right.get(k) as Uint8Array)))
        expect(result.peers).to.deep.equal([honest.node.peerId.toString()])
        expect(client.node.fetcher.stats().rejectedChunks).to.equal(round)
      }
      // three faults: cut off, its catalog dropped, never asked again
      await waitFor(() => client.node.guard.isBanned(liar.node.peerId) && client.node.catalog.peersWith(keys[5] as string).length === 0)
      await client.node.fetcher.fetchContinuation(keys, 0, {})
      expect(client.node.fetcher.stats().rejectedChunks).to.equal(3)
    })
  })

  describe('slow and silent clients', () => {
    it('a client that opens streams and never sends a request is answered BAD_REQUEST within the request timeout', async () => {
      const server = await startNode()
      nodes.push(server)
      const client = await startNode({ peers: [server.addr] })
      nodes.push(client)
      const stream = await client.node.libp2p.dialProtocol(server.node.peerId, KV_PROTOCOL)
      const frames = await collect(readFrames(stream, MAX_REQUEST_BYTES, AbortSignal.timeout(15_000))).catch(() => [])
      expect(frames.map((f) => KvHeader.decode(f).status)).to.deep.equal([KvHeader.Status.BAD_REQUEST])
      await waitFor(() => server.node.transfer.stats().faultOffences === 1)
    })
  })
})
