import { createHash } from 'node:crypto'
import { InvalidParametersError, serviceCapabilities } from '@libp2p/interface'
import { pipe } from 'it-pipe'
import { Uint8ArrayList } from 'uint8arraylist'
import { KvHeader, KvRequest } from '../../protocols/kv.js'
import { isChunkKey } from '../cache/keys.js'
import { idleCollector } from '../idle-gc.js'
import {
  CLIENT_STREAM_READ_BUFFER_BYTES, DEFAULT_FRAME_BYTES, DEFAULT_MAX_CHUNKS_PER_REQUEST, DEFAULT_MAX_CONCURRENT_SERVES,
  DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_MAX_SERVES_PER_PEER, DEFAULT_TIMEOUT_MS, KV_PROTOCOL, MAX_CHUNK_BYTES,
  MAX_FRAME_BYTES, MAX_HEADER_BYTES, MAX_KEYS_PER_REQUEST, MAX_REQUEST_BYTES, MAX_STATUS_MESSAGE_CHARS, READ_HIGH_WATER_BYTES, REJECT_LINGER_MS,
  REQUEST_READ_TIMEOUT_MS
} from './constants.js'
import {
  ChunkVerificationError, InvalidChunkKeyError, KvProtocolError, RequestRejectedError, StreamEndedError, TooManyKeysError,
  TransferAbortedError
} from './errors.js'
import { ChunkEncodingError, decodePlanes, encodePlanes, PLANES_ENCODING, SUPPORTED_ENCODINGS } from './encoding.js'
import { copyInto, decodeFrames, encodeFrame, encodeVarint, sendWithBackpressure, streamSink, streamSource } from './frames.js'
import { decodeKvHeader, decodeKvRequest } from './messages.js'
import type { FetchedChunk, KvChunkProvider, KvPeerPolicy, KvTransfer, KvTransferComponents, KvTransferInit, KvTransferStats, PeerOffence } from './index.js'
import type { RejectionStatus } from './errors.js'
import type { AbortOptions, Logger, PeerId, Startable, Stream } from '@libp2p/interface'

const EMPTY = new Uint8Array(0)

/**
 * SHA-256 of a payload, synchronously: measured here, WebCrypto on the thread pool cost ~15 % more CPU
 * per MB (copy and hand-off) and gave no throughput back (0.4–0.7 ms per 590 KB chunk on the loop).
 */
function sha256 (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  // a fresh (unpooled) Buffer over its own ArrayBuffer
  return createHash('sha256').update(bytes).digest() as Uint8Array<ArrayBuffer>
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function clip (message: string): string {
  return message.length > MAX_STATUS_MESSAGE_CHARS ? message.slice(0, MAX_STATUS_MESSAGE_CHARS) : message
}

/** Resolves when the remote has closed its writable end (or the stream is gone); rejects on abort. */
async function waitForRemoteClose (stream: Stream, signal: AbortSignal): Promise<void> {
  if (stream.remoteWriteStatus === 'closed' || stream.status !== 'open') return
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      stream.removeEventListener('remoteCloseWrite', onEnd)
      stream.removeEventListener('close', onEnd)
      signal.removeEventListener('abort', onAbort)
    }
    function onEnd (): void { done(); resolve() }
    function onAbort (): void { done(); reject(signal.reason) }
    stream.addEventListener('remoteCloseWrite', onEnd)
    stream.addEventListener('close', onEnd)
    signal.addEventListener('abort', onAbort)
  })
}

function anySignal (...signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s != null))
}

const REJECTIONS: Partial<Record<KvHeader.Status, RejectionStatus>> = {
  [KvHeader.Status.BAD_REQUEST]: 'bad-request',
  [KvHeader.Status.WRONG_MODEL]: 'wrong-model',
  [KvHeader.Status.BUSY]: 'busy'
}

interface Loaded { bytes?: Uint8Array, digest?: Uint8Array<ArrayBuffer>, error?: string }

/** The first frame of a source (and the source is closed: nothing more is read). */
async function firstFrame (frames: AsyncIterable<Uint8ArrayList>): Promise<Uint8ArrayList | undefined> {
  for await (const frame of frames) return frame
  return undefined
}

/** Which errors from a remote mean it misbehaved, and how badly; undefined: not its fault (or not provably). */
function offenceOf (err: unknown): PeerOffence | undefined {
  const name = (err as Error)?.name
  if (name === 'FrameTooLargeError') return 'limit'
  if (name === 'KvProtocolError' || name === 'ChunkVerificationError') return 'fault'
  return undefined
}

/**
 * Server and client of `/promptmesh/kv/1.0.0` (see protocols/kv.md).
 *
 * Server: admits the request (per-peer rate and concurrency, then the node-wide limit), reads one
 * bounded request frame, then pipes the answers (for each key a header and the payload in bounded
 * data frames, the next chunk loaded while the current one is sent) into the stream, which waits for
 * 'drain' whenever the send buffer is full. Client: pipes the stream through a bounded source and the
 * frame decoder into the answer parser, which verifies size and SHA-256 before yielding a chunk.
 * Peers that exceed a limit or send malformed or unverifiable data are reported to the policy.
 */
export class KvTransferService implements KvTransfer, Startable {
  readonly modelFingerprint: string
  readonly maxChunksPerRequest: number
  private readonly components: KvTransferComponents
  private readonly provider: KvChunkProvider
  private readonly maxFrameBytes: number
  private readonly timeoutMs: number
  private readonly maxChunkBytes: number
  private readonly maxConcurrentServes: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly maxServesPerPeer: number
  private readonly policy?: KvPeerPolicy
  private readonly compression: boolean
  private readonly log: Logger
  private started = false
  private shutdown = new AbortController()
  private activeServes = 0
  /** requests being served, per peer */
  private readonly servesByPeer = new Map<string, number>()
  private readonly counters: KvTransferStats = {
    chunksServed: 0,
    bytesServed: 0,
    requestsServed: 0,
    keysRequested: 0,
    requestsRejected: 0,
    serveErrors: 0,
    notFoundServed: 0,
    chunksFetched: 0,
    bytesFetched: 0,
    wireBytesServed: 0,
    wireBytesFetched: 0,
    requestsSent: 0,
    verificationFailures: 0,
    limitOffences: 0,
    faultOffences: 0
  }

  readonly [Symbol.toStringTag] = '@promptmesh/kv-transfer'
  readonly [serviceCapabilities]: string[] = ['@promptmesh/kv-transfer']

  constructor (components: KvTransferComponents, init: KvTransferInit) {
    this.components = components
    this.log = components.logger.forComponent('promptmesh:transfer')
    this.modelFingerprint = init.modelFingerprint
    this.provider = init.provider
    this.maxChunksPerRequest = init.maxChunksPerRequest ?? DEFAULT_MAX_CHUNKS_PER_REQUEST
    this.maxFrameBytes = init.maxFrameBytes ?? DEFAULT_FRAME_BYTES
    this.timeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.maxChunkBytes = init.maxChunkBytes ?? MAX_CHUNK_BYTES
    this.maxConcurrentServes = init.maxConcurrentServes ?? DEFAULT_MAX_CONCURRENT_SERVES
    this.maxInboundStreams = init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
    this.maxOutboundStreams = init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    this.maxServesPerPeer = init.maxServesPerPeer ?? DEFAULT_MAX_SERVES_PER_PEER
    this.policy = init.policy
    this.compression = init.compression ?? true
    if (!Number.isInteger(this.maxChunksPerRequest) || this.maxChunksPerRequest < 1 || this.maxChunksPerRequest > MAX_KEYS_PER_REQUEST) {
      throw new InvalidParametersError(`maxChunksPerRequest must be 1..${MAX_KEYS_PER_REQUEST}`)
    }
    if (!Number.isInteger(this.maxFrameBytes) || this.maxFrameBytes < 1 || this.maxFrameBytes > MAX_FRAME_BYTES) {
      throw new InvalidParametersError(`maxFrameBytes must be 1..${MAX_FRAME_BYTES}`)
    }
    if (!Number.isInteger(this.maxChunkBytes) || this.maxChunkBytes < 0) throw new InvalidParametersError('maxChunkBytes must be a non-negative integer')
    if (!(this.timeoutMs > 0)) throw new InvalidParametersError('timeoutMs must be positive')
    if (!Number.isInteger(this.maxServesPerPeer) || this.maxServesPerPeer < 1) throw new InvalidParametersError('maxServesPerPeer must be a positive integer')
  }

  async start (): Promise<void> {
    if (this.started) return
    this.shutdown = new AbortController()
    await this.components.registrar.handle(KV_PROTOCOL, (stream, connection) => {
      // the handler must not throw: everything is caught inside serve()
      void this.serve(stream, connection.remotePeer)
    }, {
      maxInboundStreams: this.maxInboundStreams,
      maxOutboundStreams: this.maxOutboundStreams
    })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.components.registrar.unhandle(KV_PROTOCOL)
    // aborts every serve and fetch in flight
    this.shutdown.abort(new TransferAbortedError('kv transfer service stopped'))
  }

  stats (): KvTransferStats {
    return { ...this.counters }
  }

  /** Counts an offence and hands the peer to the policy (which may cut it off). */
  private offend (peer: PeerId, offence: PeerOffence, reason: string): void {
    if (offence === 'limit') this.counters.limitOffences++
    else this.counters.faultOffences++
    this.log('peer %p: %s (%s)', peer, reason, offence)
    try {
      this.policy?.report(peer, offence, reason)
    } catch (err) {
      this.log.error('peer policy failed: %e', err)
    }
  }

  // ---------------------------------------------------------------------------------------- server

  private async serve (stream: Stream, peer: PeerId): Promise<void> {
    this.counters.requestsServed++
    this.log.trace('stream %s opened by %p', stream.id, peer)
    const signal = anySignal(this.shutdown.signal, AbortSignal.timeout(this.timeoutMs))
    const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new TransferAbortedError('aborted')) }
    signal.addEventListener('abort', onAbort, { once: true })
    const id = peer.toString()
    const ofPeer = (this.servesByPeer.get(id) ?? 0) + 1
    this.servesByPeer.set(id, ofPeer)
    this.activeServes++
    // a serve allocates megabytes: collected once the node is quiet, not during the next transfer
    const done = idleCollector.busy()
    try {
      // per peer first: one peer's flood must not look like the node being busy
      if (this.policy != null && !this.policy.admit(peer, 'kv-request')) {
        await this.reject(stream, KvHeader.Status.BUSY, 'request rate exceeded', signal, { peer, offence: 'limit' })
        return
      }
      if (ofPeer > this.maxServesPerPeer) {
        await this.reject(stream, KvHeader.Status.BUSY, `at most ${this.maxServesPerPeer} requests at once per peer`, signal, { peer, offence: 'limit' })
        return
      }
      if (this.activeServes > this.maxConcurrentServes) {
        await this.reject(stream, KvHeader.Status.BUSY, `serving ${this.maxConcurrentServes} requests already`, signal)
        return
      }
      const request = await this.readRequest(stream, peer, signal)
      if (request == null) return
      const keys = request.keys
      this.counters.keysRequested += keys.length
      this.log.trace('serving %d keys to %s', keys.length, stream.id)
      const encode = this.compression && request.acceptEncodings.includes(PLANES_ENCODING)
      await pipe(this.answerFrames(keys, encode, signal), streamSink(stream, { signal }))
      await stream.close({ signal })
    } catch (err) {
      this.counters.serveErrors++
      this.log('serve on stream %s failed: %s', stream.id, (err as Error)?.message)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      done()
      this.activeServes--
      const left = (this.servesByPeer.get(id) ?? 1) - 1
      if (left <= 0) this.servesByPeer.delete(id)
      else this.servesByPeer.set(id, left)
      signal.removeEventListener('abort', onAbort)
    }
  }

  /**
   * Reads and validates the request, answering a whole-request status itself when it is refused. A
   * request over a protocol limit (frame size, 1,024 keys) is an offence; fewer keys than that but more
   * than this server accepts is an honest BAD_REQUEST (servers may accept fewer).
   */
  private async readRequest (stream: Stream, peer: PeerId, signal: AbortSignal): Promise<KvRequest | undefined> {
    let request: KvRequest
    const readSignal = anySignal(signal, AbortSignal.timeout(REQUEST_READ_TIMEOUT_MS))
    try {
      const frame = await pipe(
        streamSource(stream, { highWaterBytes: MAX_REQUEST_BYTES, signal: readSignal }),
        decodeFrames(MAX_REQUEST_BYTES),
        firstFrame
      )
      if (frame == null) throw new StreamEndedError('stream ended before the request')
      request = decodeKvRequest(frame, MAX_KEYS_PER_REQUEST)
    } catch (err) {
      if (signal.aborted) throw err
      const e = err as Error
      const timedOut = readSignal.aborted
      const message = timedOut ? `no request within ${REQUEST_READ_TIMEOUT_MS} ms` : e.message
      const offence: PeerOffence = e instanceof TooManyKeysError || e.name === 'FrameTooLargeError' ? 'limit' : 'fault'
      await this.reject(stream, KvHeader.Status.BAD_REQUEST, message, signal, { peer, offence })
      return undefined
    }
    if (request.keys.length > this.maxChunksPerRequest) {
      await this.reject(stream, KvHeader.Status.BAD_REQUEST, `too many keys: at most ${this.maxChunksPerRequest} per request`, signal)
      return undefined
    }
    if (request.fingerprint !== this.modelFingerprint) {
      await this.reject(stream, KvHeader.Status.WRONG_MODEL, `this node serves model ${this.modelFingerprint}`, signal)
      return undefined
    }
    return request
  }

  /**
   * Sends one whole-request status, closes our end and resets the rest (the client may still be
   * writing). With `blame`, the peer is reported once the status is out and the client had its moment
   * to read it, so that even a peer the policy cuts off learns why.
   */
  private async reject (stream: Stream, status: KvHeader.Status, message: string, signal: AbortSignal, blame?: { peer: PeerId, offence: PeerOffence }): Promise<void> {
    this.counters.requestsRejected++
    this.log('rejecting request on stream %s: %s %s', stream.id, status, message)
    const header = KvHeader.encode({ status, message: clip(message) })
    try {
      await sendWithBackpressure(stream, encodeFrame(header), { signal })
      await stream.close({ signal })
      // a well-behaved client closes its end right after its request: give it a moment so that it
      // reads our answer rather than a reset; anyone still sending after that is reset
      await waitForRemoteClose(stream, AbortSignal.any([signal, AbortSignal.timeout(REJECT_LINGER_MS)])).catch(() => {})
    } finally {
      if (blame != null) this.offend(blame.peer, blame.offence, message)
    }
    if (stream.status !== 'closed') stream.abort(new KvProtocolError(`request rejected: ${status}`))
  }

  private async load (key: Uint8Array): Promise<Loaded> {
    try {
      if (this.provider.getWithDigest != null) {
        const found = await this.provider.getWithDigest(toHex(key))
        if (found == null) return {}
        if (found.bytes.byteLength > MAX_CHUNK_BYTES) return { error: `chunk of ${found.bytes.byteLength} bytes exceeds the protocol limit` }
        if (found.sha256.byteLength !== 32) return { error: 'store returned a digest that is not 32 bytes' }
        return { bytes: found.bytes, digest: new Uint8Array(found.sha256) }
      }
      const bytes = await this.provider.get(toHex(key))
      if (bytes == null) return {}
      if (bytes.byteLength > MAX_CHUNK_BYTES) return { error: `chunk of ${bytes.byteLength} bytes exceeds the protocol limit` }
      return { bytes, digest: sha256(bytes) }
    } catch (err) {
      return { error: clip(`cannot read chunk: ${(err as Error)?.message}`) }
    }
  }

  /** The response, frame by frame: an it-pipe source that reads the next chunk while the current one is sent. */
  private async * answerFrames (keys: Array<Uint8Array<ArrayBuffer>>, encode: boolean, signal: AbortSignal): AsyncGenerator<Uint8Array | Uint8ArrayList, void, undefined> {
    let next: Promise<Loaded> | undefined = keys[0] != null ? this.load(keys[0]) : undefined
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as Uint8Array<ArrayBuffer>
      const loaded = await (next as Promise<Loaded>)
      const following = keys[i + 1]
      next = following != null ? this.load(following) : undefined
      signal.throwIfAborted()
      if (loaded.error != null) {
        yield encodeFrame(KvHeader.encode({ status: KvHeader.Status.ERROR, key, message: loaded.error }))
        continue
      }
      if (loaded.bytes == null) {
        this.counters.notFoundServed++
        yield encodeFrame(KvHeader.encode({ status: KvHeader.Status.NOT_FOUND, key }))
        continue
      }
      const bytes = loaded.bytes
      this.log.trace('chunk %d of %d loaded (%d bytes)', i, keys.length, bytes.byteLength)
      // encoded only when the client asked and it saves bytes on the link (see encoding.ts)
      const encoded = encode ? encodePlanes(bytes) : undefined
      const body = encoded ?? bytes
      yield encodeFrame(KvHeader.encode({
        status: KvHeader.Status.FOUND,
        key,
        size: bytes.byteLength,
        sha256: loaded.digest,
        encoding: encoded != null ? PLANES_ENCODING : '',
        encodedSize: encoded?.byteLength ?? 0
      }))
      for (let offset = 0; offset < body.byteLength; offset += this.maxFrameBytes) {
        const part = body.subarray(offset, Math.min(offset + this.maxFrameBytes, body.byteLength))
        yield new Uint8ArrayList(encodeVarint(part.byteLength), part)
      }
      this.counters.chunksServed++
      this.counters.bytesServed += bytes.byteLength
      this.counters.wireBytesServed += body.byteLength
    }
  }

  // ---------------------------------------------------------------------------------------- client

  async * fetch (peer: PeerId, keys: string[], options: AbortOptions = {}): AsyncGenerator<FetchedChunk, void, undefined> {
    if (keys.length > this.maxChunksPerRequest) {
      throw new TooManyKeysError(`asked for ${keys.length} keys, at most ${this.maxChunksPerRequest} per request`)
    }
    const keyBytes = keys.map((key) => {
      if (!isChunkKey(key)) throw new InvalidChunkKeyError(`not a chunk key: ${JSON.stringify(key).slice(0, 80)}`)
      return Buffer.from(key, 'hex')
    })
    if (keys.length === 0) return
    const signal = anySignal(options.signal, this.shutdown.signal, AbortSignal.timeout(this.timeoutMs))
    const stream = await this.components.connectionManager.openStream(peer, KV_PROTOCOL, {
      signal,
      maxOutboundStreams: this.maxOutboundStreams
    })
    this.counters.requestsSent++
    this.log.trace('stream %s to %p open', stream.id, peer)
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, CLIENT_STREAM_READ_BUFFER_BYTES)
    const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new TransferAbortedError('aborted')) }
    signal.addEventListener('abort', onAbort, { once: true })
    let finished = false
    try {
      const request = KvRequest.encode({ fingerprint: this.modelFingerprint, keys: keyBytes, acceptEncodings: this.compression ? [...SUPPORTED_ENCODINGS] : [] })
      try {
        await sendWithBackpressure(stream, encodeFrame(request), { signal })
        await stream.close({ signal })
        this.log.trace('request for %d keys sent on %s', keys.length, stream.id)
      } catch (err) {
        // a server that refuses at once (BUSY) may reset the stream before our request is out:
        // its answer can still be in the read buffer, so read before reporting the write error
        if (signal.aborted) throw err
        this.log('sending request to %p failed (%s), reading the answer', peer, (err as Error).message)
      }
      // the limit of the next frame depends on its position (header or data): the parser sets it
      // before pulling each frame, and the decoder checks it before buffering the frame's payload
      const limit = { bytes: MAX_HEADER_BYTES }
      yield * pipe(
        streamSource(stream, { highWaterBytes: READ_HIGH_WATER_BYTES, signal }),
        decodeFrames(() => limit.bytes),
        (frames) => this.answers(frames, limit, keys, keyBytes)
      )
      finished = true
    } catch (err) {
      const offence = signal.aborted ? undefined : offenceOf(err)
      if (offence != null) this.offend(peer, offence, `bad response: ${(err as Error).message}`)
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
      // covers errors and a consumer that stopped iterating early
      if (!finished) stream.abort(new TransferAbortedError('fetch ended before the response was complete'))
    }
  }

  /** it-pipe sink of the client: frames in, verified answers out, in request order. */
  private async * answers (frames: AsyncIterable<Uint8ArrayList>, limit: { bytes: number }, keys: string[], keyBytes: Uint8Array[]): AsyncGenerator<FetchedChunk, void, undefined> {
    const it = frames[Symbol.asyncIterator]()
    const next = async (maxBytes: number): Promise<Uint8ArrayList | undefined> => {
      limit.bytes = maxBytes
      const r = await it.next()
      return r.done === true ? undefined : r.value
    }
    // encoded chunks are received here and decoded into memory of their own (kept between chunks)
    const wireScratch = { buffer: Buffer.alloc(0) }
    try {
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string
        const frame = await next(MAX_HEADER_BYTES)
        if (frame == null) throw new StreamEndedError('stream ended before all answers were received')
        const header = decodeKvHeader(frame)
        const rejection = REJECTIONS[header.status]
        if (rejection != null) {
          if (i > 0) throw new KvProtocolError(`whole-request status ${header.status} after ${i} answers`)
          throw new RequestRejectedError(rejection, header.message)
        }
        if (!equalBytes(header.key, keyBytes[i] as Uint8Array)) {
          throw new KvProtocolError(`answer ${i} is for key ${toHex(header.key).slice(0, 16)}..., expected ${key.slice(0, 16)}...`)
        }
        if (header.status === KvHeader.Status.FOUND) {
          const bytes = await this.readChunk(next, key, header, wireScratch)
          this.counters.chunksFetched++
          this.counters.bytesFetched += bytes.byteLength
          yield { key, status: 'found', bytes }
        } else if (header.status === KvHeader.Status.NOT_FOUND) {
          yield { key, status: 'not-found' }
        } else if (header.status === KvHeader.Status.ERROR) {
          yield { key, status: 'error', message: header.message }
        } else {
          throw new KvProtocolError(`unknown status ${header.status}`)
        }
      }
      let extra: Uint8ArrayList | undefined
      try {
        extra = await next(MAX_FRAME_BYTES)
      } catch (err) {
        if (offenceOf(err) == null && (err as Error)?.name !== 'StreamEndedError') throw err
        throw new KvProtocolError('data after the last answer')
      }
      if (extra != null) throw new KvProtocolError('data after the last answer')
    } finally {
      await it.return?.()
    }
  }

  private async readChunk (next: (maxBytes: number) => Promise<Uint8ArrayList | undefined>, key: string, header: KvHeader, wireScratch: { buffer: Buffer }): Promise<Uint8Array> {
    if (header.size > this.maxChunkBytes) throw new KvProtocolError(`chunk of ${header.size} bytes exceeds the limit of ${this.maxChunkBytes}`)
    if (header.sha256.byteLength !== 32) throw new KvProtocolError(`sha256 of ${header.sha256.byteLength} bytes`)
    const encoded = header.encoding !== ''
    if (encoded && !(this.compression && (SUPPORTED_ENCODINGS as readonly string[]).includes(header.encoding))) {
      throw new KvProtocolError(`chunk in encoding ${JSON.stringify(header.encoding.slice(0, 40))}, which was not asked for`)
    }
    const wireSize = encoded ? header.encodedSize : header.size
    if (encoded && (wireSize === 0 || wireSize > this.maxChunkBytes)) throw new KvProtocolError(`encoded chunk of ${wireSize} bytes`)
    if (encoded && wireScratch.buffer.length < wireSize) wireScratch.buffer = Buffer.allocUnsafeSlow(wireSize)
    // not zero-filled: every byte is overwritten below, or the buffer is dropped with an error
    const wire = wireSize === 0 ? EMPTY : encoded ? wireScratch.buffer.subarray(0, wireSize) : Buffer.allocUnsafeSlow(wireSize)
    let received = 0
    while (received < wireSize) {
      const frame = await next(MAX_FRAME_BYTES)
      if (frame == null) throw new StreamEndedError(`stream ended after ${received} of ${wireSize} bytes of chunk ${key}`)
      if (frame.byteLength === 0) throw new KvProtocolError('empty data frame')
      if (received + frame.byteLength > wireSize) {
        this.counters.verificationFailures++
        throw new ChunkVerificationError(key, `more bytes than the declared size of ${wireSize}`)
      }
      copyInto(frame, wire, received)
      received += frame.byteLength
    }
    this.counters.wireBytesFetched += wireSize
    let bytes: Uint8Array = wire
    if (encoded) {
      try {
        bytes = decodePlanes(wire, header.size)
      } catch (err) {
        if (!(err instanceof ChunkEncodingError)) throw err
        this.counters.verificationFailures++
        throw new ChunkVerificationError(key, err.message)
      }
    }
    if (!equalBytes(sha256(bytes), header.sha256)) {
      this.counters.verificationFailures++
      throw new ChunkVerificationError(key, 'SHA-256 does not match the declared digest')
    }
    return bytes
  }
}
