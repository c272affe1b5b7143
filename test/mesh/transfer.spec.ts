import '../../src/polyfill.js'
import { createHash } from 'node:crypto'
import { expect } from 'chai'
import {
  encodeFrame, encodePlanes, encodeVarint, KV_PROTOCOL, KvHeader, KvRequest, MAX_HEADER_BYTES, MAX_REQUEST_BYTES, PLANES_ENCODING
} from '../../src/transfer/index.js'
import { f16Payload } from '../fixtures/f16.js'
import { collect, equalBytes, payload, randomKey, readFirstFrame, readFrames, startNode, stopAll, waitFor } from './helpers.js'
import type { FetchedChunk } from '../../src/transfer/index.js'
import type { TestNode } from './helpers.js'
import type { Stream } from '@libp2p/interface'

const sha256 = (b: Uint8Array): Uint8Array => createHash('sha256').update(b).digest()

async function expectRejection (promise: Promise<unknown>, name: string): Promise<Error> {
  try {
    await promise
  } catch (err) {
    expect((err as Error).name).to.equal(name, (err as Error).message)
    return err as Error
  }
  expect.fail(`expected ${name}`)
}

/** Sends raw bytes on a kv stream and returns the headers the server answered with. */
async function rawRequest (client: TestNode, server: TestNode, bytes: Uint8Array, closeWrite = true): Promise<KvHeader[]> {
  const stream = await client.node.libp2p.dialProtocol(server.node.peerId, KV_PROTOCOL)
  stream.send(bytes)
  if (closeWrite) await stream.close()
  const headers: KvHeader[] = []
  const signal = AbortSignal.timeout(10_000)
  try {
    for await (const frame of readFrames(stream, MAX_HEADER_BYTES, signal)) headers.push(KvHeader.decode(frame))
  } catch (err) {
    // the server resets the stream after a refusal; what it sent first was read above
    if (signal.aborted) throw err
  }
  return headers
}

/** Replaces a node's kv handler with one that answers every key through `answer`. */
async function rogueServer (server: TestNode, answer: (key: Uint8Array, stream: Stream) => void): Promise<void> {
  await server.node.libp2p.handle(KV_PROTOCOL, async (stream) => {
    try {
      const frame = await readFirstFrame(stream, MAX_REQUEST_BYTES, AbortSignal.timeout(5_000))
      if (frame == null) return
      for (const key of KvRequest.decode(frame).keys) answer(key, stream)
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }, { force: true })
}

function sendFound (stream: Stream, key: Uint8Array, declared: Uint8Array, sent: Uint8Array): void {
  stream.send(encodeFrame(KvHeader.encode({ status: KvHeader.Status.FOUND, key: key as Uint8Array<ArrayBuffer>, size: declared.byteLength, sha256: sha256(declared) as Uint8Array<ArrayBuffer> })))
  if (sent.byteLength > 0) stream.send(encodeFrame(sent))
}

describe('kv transfer', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  let server: TestNode
  let client: TestNode

  beforeEach(async () => {
    server = await startNode({ transfer: { maxChunksPerRequest: 64 } })
    nodes.push(server)
    client = await startNode({ peers: [server.addr], transfer: { maxChunksPerRequest: 1024 } })
    nodes.push(client)
  })

  afterEach(async () => { await stopAll(nodes) })

  it('transfers many chunks, some ~600 KB, byte-identical and in order', async () => {
    const sizes = [590_488, 10_240, 1, 0, 3_000_001, 600_000, 262_144, 262_145, 48]
    const keys: string[] = []
    const expected = new Map<string, Uint8Array>()
    for (let i = 0; i < 40; i++) {
      const key = randomKey()
      keys.push(key)
      if (i === 7) continue // one key the server lacks
      const bytes = payload(i, sizes[i % sizes.length] as number)
      expected.set(key, bytes)
      server.store.put(key, bytes)
    }
    const answers = await collect(client.node.transfer.fetch(server.node.peerId, keys))
    expect(answers.map((a) => a.key)).to.deep.equal(keys)
    let bytes = 0
    answers.forEach((a, i) => {
      if (i === 7) {
        expect(a.status).to.equal('not-found')
        return
      }
      expect(a.status).to.equal('found')
      expect(equalBytes((a as Extract<FetchedChunk, { status: 'found' }>).bytes, expected.get(a.key))).to.equal(true, `chunk ${i}`)
      bytes += expected.get(a.key)?.byteLength ?? 0
    })
    const c = client.node.transfer.stats()
    const s = server.node.transfer.stats()
    expect(c.chunksFetched).to.equal(39)
    expect(c.bytesFetched).to.equal(bytes)
    expect(c.verificationFailures).to.equal(0)
    expect(s.chunksServed).to.equal(39)
    expect(s.bytesServed).to.equal(bytes)
    expect(s.notFoundServed).to.equal(1)
  })

  it('serves concurrent requests from the same client', async () => {
    const keys = Array.from({ length: 12 }, randomKey)
    keys.forEach((k, i) => { server.store.put(k, payload(i, 300_000)) })
    const results = await Promise.all([0, 4, 8].map(async (at) => collect(client.node.transfer.fetch(server.node.peerId, keys.slice(at, at + 4)))))
    results.flat().forEach((a, i) => {
      expect(a.status).to.equal('found')
      expect(equalBytes((a as Extract<FetchedChunk, { status: 'found' }>).bytes, payload(i, 300_000))).to.equal(true)
    })
  })

  describe('encodings', () => {
    /** f16-shaped chunks (compressible like KV data), one random (incompressible), one the server lacks */
    function kvShaped (): { keys: string[], chunks: Map<string, Uint8Array> } {
      const keys = Array.from({ length: 6 }, randomKey)
      const chunks = new Map<string, Uint8Array>()
      const sizes = [590_488, 10_001, 300_000, 64]
      keys.slice(0, 4).forEach((k, i) => { chunks.set(k, f16Payload(i + 1, sizes[i] as number)) })
      chunks.set(keys[4] as string, payload(5, 200_000))
      for (const [k, b] of chunks) server.store.put(k, b)
      return { keys, chunks }
    }

    async function fetchAll (from: TestNode, keys: string[], chunks: Map<string, Uint8Array>): Promise<void> {
      const answers = await collect(from.node.transfer.fetch(server.node.peerId, keys))
      expect(answers.map(a => a.status)).to.deep.equal(['found', 'found', 'found', 'found', 'found', 'not-found'])
      for (const a of answers) {
        if (a.status === 'found') expect(equalBytes(a.bytes, chunks.get(a.key)), a.key).to.equal(true)
      }
    }

    it('moves KV-shaped chunks in fewer bytes, byte-identical after decoding', async () => {
      const { keys, chunks } = kvShaped()
      await fetchAll(client, keys, chunks)
      const c = client.node.transfer.stats()
      const s = server.node.transfer.stats()
      const total = [...chunks.values()].reduce((n, b) => n + b.byteLength, 0)
      expect(c.bytesFetched).to.equal(total)
      expect(c.wireBytesFetched).to.equal(s.wireBytesServed)
      // the random chunk (200 KB) goes as it is; the f16 ones (900 KB) shrink by more than 10 %
      expect(c.wireBytesFetched).to.be.below(total - 90_000)
      expect(c.verificationFailures).to.equal(0)
    })

    it('sends chunks as they are to a client that does not ask, and a server that does not encode ignores the ask', async () => {
      const { keys, chunks } = kvShaped()
      const plain = await startNode({ peers: [server.addr], transfer: { compression: false } })
      nodes.push(plain)
      await fetchAll(plain, keys, chunks)
      expect(plain.node.transfer.stats().wireBytesFetched).to.equal(plain.node.transfer.stats().bytesFetched)

      const plainServer = await startNode({ transfer: { compression: false } })
      nodes.push(plainServer)
      for (const [k, b] of chunks) plainServer.store.put(k, b)
      const asker = await startNode({ peers: [plainServer.addr] })
      nodes.push(asker)
      const answers = await collect(asker.node.transfer.fetch(plainServer.node.peerId, keys.slice(0, 1)))
      expect(equalBytes((answers[0] as Extract<FetchedChunk, { status: 'found' }>).bytes, chunks.get(keys[0] as string))).to.equal(true)
      expect(plainServer.node.transfer.stats().wireBytesServed).to.equal(590_488)
    })

    it('refuses an encoding it did not ask for, and a malformed encoded chunk', async () => {
      const bytes = f16Payload(9, 50_000)
      const encoded = encodePlanes(bytes) as Uint8Array
      const found = (key: Uint8Array, encoding: string, sent: Uint8Array): ReturnType<typeof encodeFrame> => encodeFrame(KvHeader.encode({
        status: KvHeader.Status.FOUND, key: key as Uint8Array<ArrayBuffer>, size: bytes.byteLength, sha256: sha256(bytes) as Uint8Array<ArrayBuffer>, encoding, encodedSize: sent.byteLength
      }))
      await rogueServer(server, (key, stream) => { stream.send(found(key, 'zstd', encoded)); stream.send(encodeFrame(encoded)) })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'KvProtocolError')

      const plain = await startNode({ peers: [server.addr], transfer: { compression: false } })
      nodes.push(plain)
      await rogueServer(server, (key, stream) => { stream.send(found(key, PLANES_ENCODING, encoded)); stream.send(encodeFrame(encoded)) })
      await expectRejection(collect(plain.node.transfer.fetch(server.node.peerId, [randomKey()])), 'KvProtocolError')

      const corrupt = Buffer.from(encoded)
      corrupt.fill(0xff, 4, 64)
      await rogueServer(server, (key, stream) => { stream.send(found(key, PLANES_ENCODING, corrupt)); stream.send(encodeFrame(corrupt)) })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'ChunkVerificationError')
      expect(client.node.transfer.stats().verificationFailures).to.equal(1)
    })
  })

  describe('incoming', () => {
    it('rejects a chunk whose bytes do not match the declared hash, keeping earlier answers', async () => {
      const keys = [randomKey(), randomKey(), randomKey()]
      await rogueServer(server, (key, stream) => {
        const right = payload(key[0] as number, 1000)
        const wrong = Buffer.from(key).toString('hex') === keys[1] ? payload(999, 1000) : right
        sendFound(stream, key, right, wrong)
      })
      const seen: FetchedChunk[] = []
      const err = await expectRejection((async () => { for await (const a of client.node.transfer.fetch(server.node.peerId, keys)) seen.push(a) })(), 'ChunkVerificationError')
      expect(err.message).to.include(keys[1])
      expect(seen.map((a) => a.key)).to.deep.equal([keys[0]])
      expect(client.node.transfer.stats().verificationFailures).to.equal(1)
    })

    it('rejects a chunk whose declared hash is not of its bytes', async () => {
      await rogueServer(server, (key, stream) => {
        const right = payload(1, 5000)
        stream.send(encodeFrame(KvHeader.encode({ status: KvHeader.Status.FOUND, key: key as Uint8Array<ArrayBuffer>, size: 5000, sha256: sha256(payload(2, 5000)) as Uint8Array<ArrayBuffer> })))
        stream.send(encodeFrame(right))
      })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'ChunkVerificationError')
    })

    it('rejects a chunk longer than its declared size', async () => {
      await rogueServer(server, (key, stream) => { sendFound(stream, key, payload(1, 100), payload(1, 200)) })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'ChunkVerificationError')
    })

    it('fails cleanly on an oversized frame', async () => {
      await rogueServer(server, (key, stream) => {
        const big = payload(1, 2 * 1_048_576)
        sendFound(stream, key, big, big) // one 2 MiB frame: over the 1 MiB protocol limit
      })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'FrameTooLargeError')
    })

    it('fails cleanly on garbage and on a truncated response', async () => {
      await rogueServer(server, (_key, stream) => { stream.send(Uint8Array.from([3, 0xff, 0xff, 0xff, 0x42])) })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'KvProtocolError')
      await rogueServer(server, (key, stream) => {
        const bytes = payload(3, 10_000)
        stream.send(encodeFrame(KvHeader.encode({ status: KvHeader.Status.FOUND, key: key as Uint8Array<ArrayBuffer>, size: bytes.byteLength, sha256: sha256(bytes) as Uint8Array<ArrayBuffer> })))
        stream.send(encodeFrame(bytes.subarray(0, 4000)))
      })
      await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, [randomKey()])), 'StreamEndedError')
    })
  })

  describe('serving', () => {
    async function stillServes (to: TestNode = client): Promise<void> {
      const key = randomKey()
      server.store.put(key, payload(5, 600_000))
      const [answer] = await collect(to.node.transfer.fetch(server.node.peerId, [key]))
      expect(answer?.status).to.equal('found')
    }

    /** another client, for checking that a server which cut one off still serves the rest */
    async function otherClient (): Promise<TestNode> {
      const other = await startNode({ peers: [server.addr] })
      nodes.push(other)
      return other
    }

    it('answers a request for too many keys with BAD_REQUEST and keeps serving', async () => {
      const err = await expectRejection(collect(client.node.transfer.fetch(server.node.peerId, Array.from({ length: 65 }, randomKey))), 'RequestRejectedError')
      expect((err as Error & { status: string }).status).to.equal('bad-request')
      expect(err.message).to.include('at most 64')
      expect(server.node.transfer.stats().requestsRejected).to.equal(1)
      // within the protocol's 1,024 keys: an honest client configured for more, not an offence
      expect(server.node.guard.isBanned(client.node.peerId)).to.equal(false)
      await stillServes()
    })

    it('answers an oversized request frame with BAD_REQUEST, cuts the client off and keeps serving others', async () => {
      const bytes = new Uint8Array([...encodeVarint(10 * 1_048_576), ...new Uint8Array(1000)])
      const headers = await rawRequest(client, server, bytes, false)
      expect(headers.map((h) => h.status)).to.deep.equal([KvHeader.Status.BAD_REQUEST])
      expect(headers[0]?.message).to.match(/exceeds/)
      await waitFor(() => server.node.guard.isBanned(client.node.peerId))
      await waitFor(() => server.node.connectedPeers().every((p) => !p.equals(client.node.peerId)), 10_000, 'the client to be disconnected')
      // refused for a while: a new connection is dropped as soon as the client's identity is known
      await client.node.libp2p.dial(server.node.getMultiaddrs()).catch(() => {})
      await waitFor(() => server.node.guard.stats().refusedConnections > 0, 10_000, 'the server to refuse the banned client')
      await waitFor(() => server.node.connectedPeers().every((p) => !p.equals(client.node.peerId)), 10_000, 'the client to stay disconnected')
      await stillServes(await otherClient())
    })

    it('answers garbage with BAD_REQUEST and cuts off a peer that keeps sending it', async () => {
      const garbage: Array<[Uint8Array, 'limit' | 'fault']> = [
        [Uint8Array.from([5, 0xff, 0xff, 0xff, 0xff, 0xff]), 'fault'], // a frame that is not protobuf
        [Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff]), 'limit'], // a length prefix that never ends: a frame over the limit
        [Uint8Array.from([200, 1, 1, 2, 3]), 'fault'], // a frame cut short by the end of the stream
        [new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'), 'fault'],
        [KvRequest.encode({ fingerprint: client.node.transfer.modelFingerprint, keys: [new Uint8Array(31)] }), 'fault'], // unframed
        [encodeFrame(KvRequest.encode({ fingerprint: client.node.transfer.modelFingerprint, keys: [new Uint8Array(31)] })).subarray(), 'fault'] // a 31-byte key
      ]
      for (const [bytes, offence] of garbage) {
        const before = server.node.transfer.stats()
        const headers = await rawRequest(client, server, bytes)
        expect(headers.map((h) => h.status)).to.deep.equal([KvHeader.Status.BAD_REQUEST], Buffer.from(bytes).toString('hex'))
        // judged once the client had its moment to read the answer
        await waitFor(() => server.node.transfer.stats().limitOffences + server.node.transfer.stats().faultOffences > before.limitOffences + before.faultOffences)
        const after = server.node.transfer.stats()
        expect(after.limitOffences - before.limitOffences).to.equal(offence === 'limit' ? 1 : 0)
        expect(after.faultOffences - before.faultOffences).to.equal(offence === 'fault' ? 1 : 0)
        expect(server.node.guard.isBanned(client.node.peerId)).to.equal(offence === 'limit')
        // forgive it, so that each input is judged on its own
        server.node.guard.pardon(client.node.peerId)
      }
      const last = garbage[5]?.[0] as Uint8Array
      const headers = await rawRequest(client, server, last)
      expect(headers[0]?.message).to.match(/32 bytes/)
      await stillServes()
      // faults are tolerated twice within a minute; the third cuts the peer off
      server.node.guard.pardon(client.node.peerId)
      for (let i = 0; i < 3; i++) await rawRequest(client, server, last).catch(() => [])
      await waitFor(() => server.node.guard.isBanned(client.node.peerId))
      await stillServes(await otherClient())
    })

    it('answers a request for another model with WRONG_MODEL', async () => {
      const headers = await rawRequest(client, server, encodeFrame(KvRequest.encode({ fingerprint: 'ab'.repeat(32), keys: [new Uint8Array(32)] })).subarray())
      expect(headers.map((h) => h.status)).to.deep.equal([KvHeader.Status.WRONG_MODEL])
      await stillServes()
    })

    it('answers BUSY beyond its concurrent-serve limit', async () => {
      const busy = await startNode({ transfer: { maxConcurrentServes: 1 } })
      nodes.push(busy)
      const key = randomKey()
      busy.store.put(key, payload(1, 1000))
      let release!: () => void
      const held = new Promise<void>((resolve) => { release = resolve })
      let reads = 0
      const get = busy.store.get.bind(busy.store)
      busy.store.get = async (k: string) => { if (reads++ === 0) await held; return get(k) }
      await client.node.libp2p.dial(busy.node.getMultiaddrs())
      const first = collect(client.node.transfer.fetch(busy.node.peerId, [key]))
      await waitFor(() => reads === 1)
      const err = await expectRejection(collect(client.node.transfer.fetch(busy.node.peerId, [key])), 'RequestRejectedError')
      expect((err as Error & { status: string }).status).to.equal('busy')
      release()
      expect((await first)[0]?.status).to.equal('found')
    })

    it('answers ERROR for a chunk the provider cannot read', async () => {
      const good = randomKey()
      const broken = randomKey()
      server.store.put(good, payload(1, 100))
      const get = server.store.get.bind(server.store)
      server.store.get = async (k: string) => { if (k === broken) throw new Error('disk on fire'); return get(k) }
      const answers = await collect(client.node.transfer.fetch(server.node.peerId, [broken, good]))
      expect(answers.map((a) => a.status)).to.deep.equal(['error', 'found'])
      expect((answers[0] as { message: string }).message).to.include('disk on fire')
    })
  })

  describe('a server stopped mid-transfer', () => {
    it('gives the fetcher a clean partial result without hanging', async () => {
      const keys = Array.from({ length: 30 }, randomKey)
      keys.forEach((k, i) => { server.store.put(k, payload(i, 590_488)) })
      await waitFor(() => keys.every((k) => client.node.catalog.mayHave(server.node.peerId, k)))
      server.store.onGet = (_key, index) => { if (index === 10) void server.node.stop() }
      const result = await client.node.fetcher.fetchContinuation(keys, 0, {})
      expect(result.chunks.length).to.be.lessThan(30)
      result.chunks.forEach((c, i) => { expect(equalBytes(c, payload(i, 590_488))).to.equal(true) })
      expect(result.bytes).to.equal(result.chunks.length * 590_488)
      expect(result.peers).to.deep.equal(result.chunks.length > 0 ? [server.node.peerId.toString()] : [])
      expect(client.node.fetcher.stats().failedRequests).to.equal(1)
    })

    it('ends a direct fetch with an error, not a hang', async () => {
      const keys = Array.from({ length: 20 }, randomKey)
      keys.forEach((k, i) => { server.store.put(k, payload(i, 590_488)) })
      server.store.onGet = (_key, index) => { if (index === 5) void server.node.stop() }
      const seen: FetchedChunk[] = []
      let failed: Error | undefined
      try {
        for await (const a of client.node.transfer.fetch(server.node.peerId, keys)) seen.push(a)
      } catch (err) {
        failed = err as Error
      }
      expect(failed).to.be.instanceOf(Error)
      expect(seen.length).to.be.lessThan(20)
    })
  })
})
