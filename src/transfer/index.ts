/**
 * @packageDocumentation
 *
 * `/promptmesh/kv/1.0.0`: fetch KV-cache chunks by key from a peer. The wire format is specified in
 * `protocols/kv.md` (messages in `protocols/kv.proto`).
 *
 * @example
 *
 * ```TypeScript
 * const node = await createLibp2p({
 *   // ...transports, encrypters, muxers
 *   services: { kv: kvTransfer({ modelFingerprint, provider: store }) }
 * })
 * for await (const chunk of node.services.kv.fetch(peerId, keys, { signal })) {
 *   if (chunk.status === 'found') await store.put(chunk.key, chunk.bytes)
 * }
 * ```
 */

import { KvTransferService } from './kv-transfer.js'
import type { AbortOptions, ComponentLogger, PeerId } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'

export {
  KV_PROTOCOL, MAX_FRAME_BYTES, MAX_HEADER_BYTES, MAX_REQUEST_BYTES, MAX_KEYS_PER_REQUEST, DEFAULT_MAX_CHUNKS_PER_REQUEST, DEFAULT_TIMEOUT_MS,
  DEFAULT_MAX_SERVES_PER_PEER, DEFAULT_REQUESTS_PER_SECOND, DEFAULT_REQUEST_BURST, DEFAULT_MAX_CONCURRENT_SERVES, REQUEST_READ_TIMEOUT_MS
} from './constants.js'
export { ChunkVerificationError, FrameTooLargeError, KvProtocolError, StreamEndedError, RequestRejectedError, TooManyKeysError, InvalidChunkKeyError, TransferAbortedError } from './errors.js'
export type { RejectionStatus } from './errors.js'
export { encodeFrame, encodeVarint, FrameDecoder, decodeFrames, streamSource, streamSink } from './frames.js'
export type { ByteSource, FrameLimit, StreamSourceInit } from './frames.js'
export { decodeKvRequest, decodeKvHeader, KEY_BYTES } from './messages.js'
export { ChunkEncodingError, decodePlanes, encodePlanes, PLANES_ENCODING, SUPPORTED_ENCODINGS } from './encoding.js'
export { KvRequest, KvHeader } from '../../protocols/kv.js'

/**
 * What a peer did wrong: `limit`, it exceeded a limit of the protocol (a frame, key count, request
 * rate or concurrent streams over the bound), which no honest peer does; `fault`, it sent something
 * malformed or a chunk that failed verification, which a buggy or unlucky peer may do once.
 */
export type PeerOffence = 'limit' | 'fault'

/** Who is served and who is cut off; the node's PeerGuard fits. Without one, offences are only counted. */
export interface KvPeerPolicy {
  /** takes one request from the peer's allowance; false: refuse it (the policy has dealt with the peer) */
  admit: (peer: PeerId, kind: 'kv-request') => boolean
  /** the peer broke the protocol or a limit (the policy may close its connections and refuse it for a while) */
  report: (peer: PeerId, offence: PeerOffence, reason: string) => void
}

/** Where a server reads chunks from (a ChunkStore fits). Only reads: serving never waits behind inference. */
export interface KvChunkProvider {
  /** the payload of a chunk, or undefined when it is not held */
  get: (key: string) => Promise<Uint8Array | undefined>
  /**
   * optional: the payload with its SHA-256, for stores that keep the digest anyway (ChunkStore's files
   * carry it), which saves the server hashing every chunk it sends. Used instead of `get` when present.
   */
  getWithDigest?: (key: string) => Promise<{ bytes: Uint8Array, sha256: Uint8Array } | undefined>
}

export interface KvTransferInit {
  /** hex model fingerprint; requests for another model are answered WRONG_MODEL */
  modelFingerprint: string
  provider: KvChunkProvider
  /**
   * keys answered in one request (server) and asked in one request (client); at most 1,024
   * @default 256
   */
  maxChunksPerRequest?: number
  /**
   * size of the data frames this node sends; at most 1 MiB (the protocol limit every receiver enforces)
   * @default 262144
   */
  maxFrameBytes?: number
  /**
   * bound on one request from stream open to close, on both sides
   * @default 30000
   */
  timeoutMs?: number
  /**
   * largest chunk a client accepts
   * @default 64 MiB
   */
  maxChunkBytes?: number
  /**
   * requests served at once; beyond, the server answers BUSY
   * @default 16
   */
  maxConcurrentServes?: number
  /**
   * requests served at once to one peer, over all its connections; beyond: BUSY and the peer is reported
   * @default 8
   */
  maxServesPerPeer?: number
  /** rate limits and cutting peers off; see KvPeerPolicy */
  policy?: KvPeerPolicy
  /** @default 8 */
  maxInboundStreams?: number
  /** @default 16 */
  maxOutboundStreams?: number
  /**
   * ask peers for chunks in a compact lossless encoding, and encode chunks for peers that ask
   * (protocols/kv.md, "Encodings"): ~15 % fewer bytes on the link for a few ms of CPU per chunk
   * @default true
   */
  compression?: boolean
}

export interface KvTransferComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  logger: ComponentLogger
}

/** One answer of a fetch, in request order. */
export type FetchedChunk =
  | { key: string, status: 'found', bytes: Uint8Array }
  | { key: string, status: 'not-found' }
  | { key: string, status: 'error', message: string }

export interface KvTransferStats {
  /** chunks and payload bytes sent to peers */
  chunksServed: number
  bytesServed: number
  /** requests received (including rejected ones) and keys they asked for */
  requestsServed: number
  keysRequested: number
  /** requests answered BAD_REQUEST / WRONG_MODEL / BUSY, and streams that failed */
  requestsRejected: number
  serveErrors: number
  /** keys answered NOT_FOUND */
  notFoundServed: number
  /** verified chunks and payload bytes received from peers */
  chunksFetched: number
  bytesFetched: number
  /** bytes of chunk data on the link, as sent and received (less than the payload bytes when encoded) */
  wireBytesServed: number
  wireBytesFetched: number
  /** requests sent */
  requestsSent: number
  /** chunks that failed size or SHA-256 verification */
  verificationFailures: number
  /** offences reported to the policy: peers over a limit (as server or client), and malformed or unverifiable input */
  limitOffences: number
  faultOffences: number
}

export interface KvTransfer {
  /**
   * Asks `peer` for `keys` (at most `maxChunksPerRequest`) and yields one answer per key, in order,
   * as they arrive. A FOUND chunk is yielded only after its size and SHA-256 were verified.
   *
   * Throws ChunkVerificationError (the peer sent bytes that do not match its header), RequestRejectedError,
   * FrameTooLargeError, KvProtocolError, StreamEndedError, or the abort reason (timeout or the caller's
   * signal); any of these ends the request, and answers yielded before stay valid. Breaking out of the
   * loop aborts the stream.
   */
  fetch: (peer: PeerId, keys: string[], options?: AbortOptions) => AsyncGenerator<FetchedChunk, void, undefined>
  stats: () => KvTransferStats
  readonly modelFingerprint: string
  readonly maxChunksPerRequest: number
}

/** libp2p service factory for `/promptmesh/kv/1.0.0`. */
export function kvTransfer (init: KvTransferInit): (components: KvTransferComponents) => KvTransfer {
  return (components) => new KvTransferService(components, init)
}
