import { createHash } from 'node:crypto'
import { InvalidParametersError, serviceCapabilities } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { KvHeader, KvRequest } from '../../protocols/kv.js'
import { isChunkKey } from '../cache/keys.js'
import {
  CLIENT_STREAM_READ_BUFFER_BYTES, DEFAULT_FRAME_BYTES, DEFAULT_MAX_CHUNKS_PER_REQUEST, DEFAULT_MAX_CONCURRENT_SERVES,
  DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_TIMEOUT_MS, KV_PROTOCOL, MAX_CHUNK_BYTES, MAX_FRAME_BYTES,
  MAX_HEADER_BYTES, MAX_KEYS_PER_REQUEST, MAX_REQUEST_BYTES, MAX_STATUS_MESSAGE_CHARS, READ_HIGH_WATER_BYTES, REJECT_LINGER_MS, REQUEST_READ_TIMEOUT_MS
} from './constants.js'
import {
  ChunkVerificationError, InvalidChunkKeyError, KvProtocolError, RequestRejectedError, StreamEndedError, TooManyKeysError,
  TransferAbortedError
} from './errors.js'
import { copyInto, encodeFrame, encodeVarint, FrameReader, sendWithBackpressure } from './frames.js'
import type { FetchedChunk, KvChunkProvider, KvTransfer, KvTransferComponents, KvTransferInit, KvTransferStats } from './index.js'
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

/**
 * Server and client of `/promptmesh/kv/1.0.0` (see protocols/kv.md).
 *
 * Server: reads one bounded request frame, then for each key a header and the payload in bounded data
 * frames, loading the next chunk from the provider while the current one is sent and waiting for
 * 'drain' whenever the stream's buffer is full. Client: verifies size and SHA-256 before yielding.
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
  private readonly log: Logger
  private started = false
  private shutdown = new AbortController()
  private activeServes = 0
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
    requestsSent: 0,
    verificationFailures: 0
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
    if (!Number.isInteger(this.maxChunksPerRequest) || this.maxChunksPerRequest < 1 || this.maxChunksPerRequest > MAX_KEYS_PER_REQUEST) {
      throw new InvalidParametersError(`maxChunksPerRequest must be 1..${MAX_KEYS_PER_REQUEST}`)
    }
    if (!Number.isInteger(this.maxFrameBytes) || this.maxFrameBytes < 1 || this.maxFrameBytes > MAX_FRAME_BYTES) {
      throw new InvalidParametersError(`maxFrameBytes must be 1..${MAX_FRAME_BYTES}`)
    }
    if (!Number.isInteger(this.maxChunkBytes) || this.maxChunkBytes < 0) throw new InvalidParametersError('maxChunkBytes must be a non-negative integer')
    if (!(this.timeoutMs > 0)) throw new InvalidParametersError('timeoutMs must be positive')
  }

  async start (): Promise<void> {
    if (this.started) return
    this.shutdown = new AbortController()
    await this.components.registrar.handle(KV_PROTOCOL, (stream) => {
      // the handler must not throw: everything is caught inside serve()
      void this.serve(stream)
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

  // ---------------------------------------------------------------------------------------- server

  private async serve (stream: Stream): Promise<void> {
    this.counters.requestsServed++
    const signal = anySignal(this.shutdown.signal, AbortSignal.timeout(this.timeoutMs))
    const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new TransferAbortedError('aborted')) }
    signal.addEventListener('abort', onAbort, { once: true })
    this.activeServes++
    try {
      if (this.activeServes > this.maxConcurrentServes) {
        await this.reject(stream, KvHeader.Status.BUSY, `serving ${this.maxConcurrentServes} requests already`, signal)
        return
      }
      const request = await this.readRequest(stream, signal)
      if (request == null) return
      const keys = request.keys
      this.counters.keysRequested += keys.length
      this.log.trace('serving %d keys to %s', keys.length, stream.id)
      await this.sendChunks(stream, keys, signal)
      await stream.close({ signal })
    } catch (err) {
      this.counters.serveErrors++
      this.log('serve on stream %s failed: %s', stream.id, (err as Error)?.message)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.activeServes--
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** Reads and validates the request, answering a whole-request status itself when it is refused. */
  private async readRequest (stream: Stream, signal: AbortSignal): Promise<KvRequest | undefined> {
    const reader = new FrameReader(stream, { highWaterBytes: MAX_REQUEST_BYTES })
    let request: KvRequest
    try {
      const frame = await reader.next(MAX_REQUEST_BYTES, { signal: anySignal(signal, AbortSignal.timeout(REQUEST_READ_TIMEOUT_MS)) })
      if (frame == null) throw new StreamEndedError('stream ended before the request')
      request = KvRequest.decode(frame, { limits: { keys: this.maxChunksPerRequest } })
    } catch (err) {
      if (signal.aborted) throw err
      const e = err as Error
      const message = e.name === 'MaxLengthError' ? `too many keys: at most ${this.maxChunksPerRequest} per request` : e.message
      await this.reject(stream, KvHeader.Status.BAD_REQUEST, message, signal)
      return undefined
    } finally {
      // anything the client sends after its request is left to libp2p's bounded buffer
      reader.release()
    }
    if (request.fingerprint !== this.modelFingerprint) {
      await this.reject(stream, KvHeader.Status.WRONG_MODEL, `this node serves model ${this.modelFingerprint}`, signal)
      return undefined
    }
    for (const key of request.keys) {
      if (key.byteLength !== 32) {
        await this.reject(stream, KvHeader.Status.BAD_REQUEST, `keys must be 32 bytes, got ${key.byteLength}`, signal)
        return undefined
      }
    }
    return request
  }

  /** Sends one whole-request status, closes our end and resets the rest (the client may still be writing). */
  private async reject (stream: Stream, status: KvHeader.Status, message: string, signal: AbortSignal): Promise<void> {
    this.counters.requestsRejected++
    this.log('rejecting request on stream %s: %s %s', stream.id, status, message)
    const header = KvHeader.encode({ status, message: clip(message) })
    await sendWithBackpressure(stream, encodeFrame(header), { signal })
    await stream.close({ signal })
    // a well-behaved client closes its end right after its request: give it a moment so that it
    // reads our answer rather than a reset; anyone still sending after that is reset
    await waitForRemoteClose(stream, AbortSignal.any([signal, AbortSignal.timeout(REJECT_LINGER_MS)])).catch(() => {})
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

  private async sendChunks (stream: Stream, keys: Array<Uint8Array<ArrayBuffer>>, signal: AbortSignal): Promise<void> {
    // read ahead one chunk so the provider's disk read overlaps with sending
    let next: Promise<Loaded> | undefined = keys[0] != null ? this.load(keys[0]) : undefined
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as Uint8Array<ArrayBuffer>
      const loaded = await (next as Promise<Loaded>)
      const following = keys[i + 1]
      next = following != null ? this.load(following) : undefined
      signal.throwIfAborted()
      if (loaded.error != null) {
        await sendWithBackpressure(stream, encodeFrame(KvHeader.encode({ status: KvHeader.Status.ERROR, key, message: loaded.error })), { signal })
        continue
      }
      if (loaded.bytes == null) {
        this.counters.notFoundServed++
        await sendWithBackpressure(stream, encodeFrame(KvHeader.encode({ status: KvHeader.Status.NOT_FOUND, key })), { signal })
        continue
      }
      const bytes = loaded.bytes
      const header = KvHeader.encode({ status: KvHeader.Status.FOUND, key, size: bytes.byteLength, sha256: loaded.digest })
      await sendWithBackpressure(stream, encodeFrame(header), { signal })
      for (let offset = 0; offset < bytes.byteLength; offset += this.maxFrameBytes) {
        const part = bytes.subarray(offset, Math.min(offset + this.maxFrameBytes, bytes.byteLength))
        await sendWithBackpressure(stream, new Uint8ArrayList(encodeVarint(part.byteLength), part), { signal })
      }
      this.counters.chunksServed++
      this.counters.bytesServed += bytes.byteLength
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
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, CLIENT_STREAM_READ_BUFFER_BYTES)
    const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new TransferAbortedError('aborted')) }
    signal.addEventListener('abort', onAbort, { once: true })
    const reader = new FrameReader(stream, { highWaterBytes: READ_HIGH_WATER_BYTES })
    let finished = false
    try {
      const request = KvRequest.encode({ fingerprint: this.modelFingerprint, keys: keyBytes })
      try {
        await sendWithBackpressure(stream, encodeFrame(request), { signal })
        await stream.close({ signal })
      } catch (err) {
        // a server that refuses at once (BUSY) may reset the stream before our request is out:
        // its answer can still be in the read buffer, so read before reporting the write error
        if (signal.aborted) throw err
        this.log('sending request to %p failed (%s), reading the answer', peer, (err as Error).message)
      }
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string
        const header = await this.readHeader(reader, signal)
        const rejection = REJECTIONS[header.status]
        if (rejection != null) {
          if (i > 0) throw new KvProtocolError(`whole-request status ${header.status} after ${i} answers`)
          throw new RequestRejectedError(rejection, header.message)
        }
        if (!equalBytes(header.key, keyBytes[i] as Uint8Array)) {
          throw new KvProtocolError(`answer ${i} is for key ${toHex(header.key).slice(0, 16)}..., expected ${key.slice(0, 16)}...`)
        }
        if (header.status === KvHeader.Status.FOUND) {
          const bytes = await this.readChunk(reader, key, header, signal)
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
      if (!(await reader.atEnd({ signal }))) throw new KvProtocolError('data after the last answer')
      finished = true
    } finally {
      signal.removeEventListener('abort', onAbort)
      reader.release()
      // covers errors and a consumer that stopped iterating early
      if (!finished) stream.abort(new TransferAbortedError('fetch ended before the response was complete'))
    }
  }

  private async readHeader (reader: FrameReader, signal: AbortSignal): Promise<KvHeader> {
    const frame = await reader.next(MAX_HEADER_BYTES, { signal })
    if (frame == null) throw new StreamEndedError('stream ended before all answers were received')
    try {
      return KvHeader.decode(frame)
    } catch (err) {
      throw new KvProtocolError(`malformed header: ${(err as Error).message}`)
    }
  }

  private async readChunk (reader: FrameReader, key: string, header: KvHeader, signal: AbortSignal): Promise<Uint8Array> {
    if (header.size > this.maxChunkBytes) throw new KvProtocolError(`chunk of ${header.size} bytes exceeds the limit of ${this.maxChunkBytes}`)
    if (header.sha256.byteLength !== 32) throw new KvProtocolError(`sha256 of ${header.sha256.byteLength} bytes`)
    // not zero-filled: every byte is overwritten below, or the buffer is dropped with an error
    const bytes = header.size === 0 ? EMPTY : Buffer.allocUnsafeSlow(header.size)
    let received = 0
    while (received < header.size) {
      const frame = await reader.next(MAX_FRAME_BYTES, { signal })
      if (frame == null) throw new StreamEndedError(`stream ended after ${received} of ${header.size} bytes of chunk ${key}`)
      if (frame.byteLength === 0) throw new KvProtocolError('empty data frame')
      if (received + frame.byteLength > header.size) {
        this.counters.verificationFailures++
        throw new ChunkVerificationError(key, `more bytes than the declared size of ${header.size}`)
      }
      copyInto(frame, bytes, received)
      received += frame.byteLength
    }
    if (!equalBytes(sha256(bytes), header.sha256)) {
      this.counters.verificationFailures++
      throw new ChunkVerificationError(key, 'SHA-256 does not match the declared digest')
    }
    return bytes
  }
}
