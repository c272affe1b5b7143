import '../../src/polyfill.js'
import { createHash, randomBytes } from 'node:crypto'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { expect } from 'chai'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { KvTransferService } from '../../src/transfer/kv-transfer.js'
import { decodePlanes, encodePlanes } from '../../src/transfer/encoding.js'
import { f16Payload } from '../fixtures/f16.js'
import {
  decodeFrames, decodeKvHeader, decodeKvRequest, encodeFrame, FrameDecoder, KvHeader, KvRequest, MAX_FRAME_BYTES, MAX_HEADER_BYTES, MAX_KEYS_PER_REQUEST
} from '../../src/transfer/index.js'
import { fuzzBytes, mutate, mutation, outcome, outcomeAsync, params, RUNS, Tally } from './fuzz.js'
import type { KvTransferComponents, PeerOffence } from '../../src/transfer/index.js'
import type { Connection, Stream, StreamHandler } from '@libp2p/interface'

const FINGERPRINT = createHash('sha256').update('fuzz model').digest('hex')
const PEER = peerIdFromString('12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5')
const sha256 = (b: Uint8Array): Uint8Array<ArrayBuffer> => createHash('sha256').update(b).digest() as Uint8Array<ArrayBuffer>
const FRAME_ERRORS = ['FrameTooLargeError', 'KvProtocolError', 'StreamEndedError']

/** Valid request and header payloads to mutate. */
function validRequests (): Uint8Array[] {
  return [0, 1, 2, 5, 64].map((n) => KvRequest.encode({ fingerprint: FINGERPRINT, keys: Array.from({ length: n }, () => randomBytes(32) as Uint8Array<ArrayBuffer>) }))
}
function validHeaders (): Uint8Array[] {
  const key = randomBytes(32) as Uint8Array<ArrayBuffer>
  return [
    KvHeader.encode({ status: KvHeader.Status.FOUND, key, size: 590_488, sha256: sha256(key) }),
    KvHeader.encode({ status: KvHeader.Status.NOT_FOUND, key }),
    KvHeader.encode({ status: KvHeader.Status.ERROR, key, message: 'disk on fire' }),
    KvHeader.encode({ status: KvHeader.Status.BUSY, message: 'serving 16 requests already' })
  ]
}

/** Cuts bytes into pieces of the given sizes (the rest in one piece), as a network would. */
function cut (bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let at = 0
  for (const n of sizes) {
    if (at >= bytes.length) break
    out.push(bytes.subarray(at, at + Math.max(1, n)))
    at += Math.max(1, n)
  }
  if (at < bytes.length) out.push(bytes.subarray(at))
  return out
}

interface Answer { key: string, payload?: Uint8Array }

/** A correct response for `answers` (undefined payload: NOT_FOUND), framed as a server sends it. */
function response (answers: Answer[], frameBytes: number): Uint8Array {
  const list = new Uint8ArrayList()
  for (const a of answers) {
    const key = Buffer.from(a.key, 'hex') as Uint8Array<ArrayBuffer>
    if (a.payload == null) {
      list.append(encodeFrame(KvHeader.encode({ status: KvHeader.Status.NOT_FOUND, key })))
      continue
    }
    list.append(encodeFrame(KvHeader.encode({ status: KvHeader.Status.FOUND, key, size: a.payload.byteLength, sha256: sha256(a.payload) })))
    for (let o = 0; o < a.payload.byteLength; o += frameBytes) list.append(encodeFrame(a.payload.subarray(o, o + frameBytes)))
  }
  return list.subarray()
}

function transferService (openStream: () => Promise<Stream>, reports: PeerOffence[]): { service: KvTransferService, handler: () => StreamHandler } {
  let handler: StreamHandler | undefined
  const components = {
    registrar: { handle: async (_p: string, h: StreamHandler) => { handler = h }, unhandle: async () => {} },
    connectionManager: { openStream },
    logger: defaultLogger()
  } as unknown as KvTransferComponents
  const service = new KvTransferService(components, {
    modelFingerprint: FINGERPRINT,
    provider: { get: async (key) => key.startsWith('0') ? undefined : Buffer.from(key, 'hex') },
    timeoutMs: 5_000,
    maxChunksPerRequest: 8,
    policy: { admit: () => true, report: (_peer, offence) => { reports.push(offence) } }
  })
  return { service, handler: () => handler as StreamHandler }
}

describe('fuzz: kv wire (protocols/kv.ts, src/transfer)', function () {
  this.timeout(600_000)
  const tally = new Tally()
  after(() => { for (const line of tally.lines()) console.log(`      ${line}`) }) // eslint-disable-line no-console

  it(`decodeKvRequest: ${RUNS} random and mutated requests give 32-byte keys within the limit, or a typed error`, () => {
    fc.assert(fc.property(fuzzBytes(validRequests()), fc.integer({ min: 1, max: MAX_KEYS_PER_REQUEST }), (bytes, maxKeys) => {
      tally.add('decodeKvRequest', outcome(() => {
        const request = decodeKvRequest(bytes, maxKeys)
        expect(request.keys.length).to.be.at.most(maxKeys)
        for (const key of request.keys) expect(key.byteLength).to.equal(32)
        expect(request.fingerprint).to.be.a('string')
      }, ['KvProtocolError', 'TooManyKeysError']))
    }), params)
  })

  it(`decodePlanes: ${RUNS} random and mutated encoded chunks decode to exactly the declared size or give a typed error`, () => {
    const bases = [2_001, 5_000, 40_000].map((n) => encodePlanes(f16Payload(n, n)) as Uint8Array)
    expect(bases.every(b => b instanceof Uint8Array)).to.equal(true)
    fc.assert(fc.property(fuzzBytes(bases, 4096), fc.constantFrom(0, 1, 100, 2_001, 5_000, 40_000, 1 << 20), (bytes, size) => {
      tally.add('decodePlanes', outcome(() => {
        expect(decodePlanes(bytes, size).byteLength).to.equal(size)
      }, ['ChunkEncodingError']))
    }), params)
  })

  it(`decodeKvHeader: ${RUNS} random and mutated headers give a known status or a typed error`, () => {
    const statuses = Object.values(KvHeader.Status)
    fc.assert(fc.property(fuzzBytes(validHeaders()), (bytes) => {
      tally.add('decodeKvHeader', outcome(() => {
        const header = decodeKvHeader(bytes)
        expect(statuses).to.include(header.status)
      }, ['KvProtocolError']))
    }), params)
  })

  it(`FrameDecoder: ${RUNS} random and mutated byte streams, cut anywhere, give frames within the limit or a typed error`, async () => {
    const frames = [new Uint8Array(0), new Uint8Array(1), randomBytes(127), randomBytes(128), randomBytes(300), randomBytes(20_000)]
    const stream = new Uint8ArrayList(...frames.map((f) => encodeFrame(f))).subarray()
    const limit = fc.oneof(fc.constantFrom(0, 1, 127, 128, 300, MAX_HEADER_BYTES, MAX_FRAME_BYTES), fc.nat({ max: 1 << 22 }))
    await fc.assert(fc.asyncProperty(fuzzBytes([stream], 4096), fc.array(fc.nat({ max: 4096 }), { maxLength: 32 }), limit, async (bytes, sizes, max) => {
      tally.add('decodeFrames', await outcomeAsync(async () => {
        let total = 0
        for await (const frame of decodeFrames(max)(cut(bytes, sizes))) {
          expect(frame.byteLength).to.be.at.most(max)
          total += frame.byteLength
        }
        expect(total).to.be.at.most(bytes.length)
      }, FRAME_ERRORS))
    }), params)
    // and what is well-formed comes out exactly as it went in, however it is cut
    await fc.assert(fc.asyncProperty(fc.array(fc.nat({ max: 4096 }), { maxLength: 32 }), async (sizes) => {
      const out: Uint8Array[] = []
      for await (const frame of decodeFrames(MAX_FRAME_BYTES)(cut(stream, sizes))) out.push(frame.subarray())
      expect(out.map((f) => Buffer.from(f).toString('hex'))).to.deep.equal(frames.map((f) => Buffer.from(f).toString('hex')))
    }), { ...params, numRuns: 200 })
    // a length prefix is refused before its payload arrives: nothing beyond the limit is ever buffered
    const decoder = new FrameDecoder()
    decoder.push(Uint8Array.from([0x80, 0x80, 0x01])) // 16,384 bytes announced
    expect(() => decoder.next(1_000)).to.throw().with.property('name', 'FrameTooLargeError')
  })

  it(`client read path: ${RUNS} random and mutated responses end in verified answers or a typed error, never a hang`, async () => {
    const keys = Array.from({ length: 4 }, () => randomBytes(32).toString('hex'))
    const payloads = keys.map((_k, i) => randomBytes(50 + i * 700))
    const valid = [
      response(keys.map((key, i) => ({ key, payload: payloads[i] })), 256),
      response(keys.map((key, i) => ({ key, payload: i % 2 === 0 ? payloads[i] : undefined })), 1000),
      response([{ key: keys[0] as string, payload: payloads[0] }], 7),
      encodeFrame(KvHeader.encode({ status: KvHeader.Status.BUSY, message: 'busy' })).subarray()
    ]
    const reports: PeerOffence[] = []
    let next: Stream | undefined
    const { service } = transferService(async () => next as Stream, reports)
    await service.start()
    const allowed = ['ChunkVerificationError', 'RequestRejectedError', ...FRAME_ERRORS]
    await fc.assert(fc.asyncProperty(fuzzBytes(valid, 2048), fc.array(fc.nat({ max: 2048 }), { maxLength: 8 }), async (bytes, sizes) => {
      const [client, server] = await streamPair()
      next = client
      // the fuzzing server: sends the bytes in pieces, then closes
      const serving = (async () => {
        for (const piece of cut(bytes, sizes)) if (!server.send(piece)) await server.onDrain()
        await server.close()
      })().catch(() => {})
      const asked = keys
      const result = await outcomeAsync(async () => {
        let i = 0
        for await (const answer of service.fetch(PEER, asked)) {
          expect(answer.key).to.equal(asked[i])
          // whatever got through is exactly what was served for that key
          if (answer.status === 'found') expect(Buffer.from(answer.bytes).equals(payloads[i] as Buffer)).to.equal(true)
          i++
        }
      }, allowed)
      tally.add('fetch (client)', result)
      await serving
      server.abort(new Error('done'))
    }), { ...params, numRuns: RUNS })
    await service.stop()
    tally.add('fetch (client): server reported to the guard', 'limit', reports.filter((r) => r === 'limit').length)
    tally.add('fetch (client): server reported to the guard', 'fault', reports.filter((r) => r === 'fault').length)
  })

  it(`server: ${RUNS} random and mutated requests get answers or one refusal, never a crash or a hang`, async () => {
    const reports: PeerOffence[] = []
    const { service, handler } = transferService(async () => { throw new Error('no dialling') }, reports)
    await service.start()
    const keys = [randomBytes(32), Buffer.concat([Buffer.alloc(1), randomBytes(31)])] as Array<Uint8Array<ArrayBuffer>>
    const valid = [
      encodeFrame(KvRequest.encode({ fingerprint: FINGERPRINT, keys })).subarray(),
      encodeFrame(KvRequest.encode({ fingerprint: FINGERPRINT, keys: [keys[0] as Uint8Array<ArrayBuffer>] })).subarray(),
      encodeFrame(KvRequest.encode({ fingerprint: 'ab'.repeat(32), keys })).subarray()
    ]
    const statuses = new Set(Object.values(KvHeader.Status))
    await fc.assert(fc.asyncProperty(fuzzBytes(valid, 1024), async (bytes) => {
      const [client, server] = await streamPair()
      handler()(server, { remotePeer: PEER } as unknown as Connection)
      client.send(bytes)
      await client.close()
      const headers: string[] = []
      const result = await outcomeAsync(async () => {
        let expectData = 0
        const signal = AbortSignal.timeout(10_000)
        for await (const frame of decodeFrames(() => expectData > 0 ? MAX_FRAME_BYTES : MAX_HEADER_BYTES)(client)) {
          if (expectData > 0) { expectData -= frame.byteLength; continue }
          const header = KvHeader.decode(frame)
          expect(statuses.has(header.status)).to.equal(true)
          headers.push(header.status)
          if (header.status === KvHeader.Status.FOUND) expectData = header.size
          if (signal.aborted) throw new Error('the server hung')
        }
      }, ['StreamResetError', 'StreamEndedError'])
      // one refusal, or answers
      const refusals = headers.filter((h) => ['BAD_REQUEST', 'WRONG_MODEL', 'BUSY'].includes(h))
      expect(refusals.length === 0 || headers.length === 1).to.equal(true, headers.join(','))
      tally.add('serve (server)', headers.length === 0 ? `no answer (${result})` : refusals.length > 0 ? (refusals[0] as string) : 'answered')
    }), params)
    await service.stop()
    expect(service.stats().requestsServed).to.equal(RUNS)
    tally.add('serve (server): client reported to the guard', 'limit', reports.filter((r) => r === 'limit').length)
    tally.add('serve (server): client reported to the guard', 'fault', reports.filter((r) => r === 'fault').length)
  })
})
