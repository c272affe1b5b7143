import { MAX_CHUNK_BYTES as STORE_MAX_CHUNK_BYTES } from '../cache/constants.js'

export const PROTOCOL_PREFIX = 'promptmesh'
export const PROTOCOL_NAME = 'kv'
export const PROTOCOL_VERSION = '1.0.0'
/** The stream protocol, `/promptmesh/kv/1.0.0`. */
export const KV_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** Protocol limit: no frame payload may exceed this (1 MiB); a receiver treats a larger one as an error. */
export const MAX_FRAME_BYTES = 1_048_576
/** Data frame size this implementation sends by default (the muxer cuts it further). */
export const DEFAULT_FRAME_BYTES = 262_144
/** Protocol limit on the request frame: 64 KiB (≥ 1,024 keys of 34 encoded bytes each plus the fingerprint). */
export const MAX_REQUEST_BYTES = 65_536
/** Protocol limit on a header frame. */
export const MAX_HEADER_BYTES = 1_024
/** Protocol limit on the number of keys in one request; servers may accept fewer. */
export const MAX_KEYS_PER_REQUEST = 1_024
/** Encodings a request may list (a protocol limit: more is a malformed request). */
export const MAX_ACCEPT_ENCODINGS = 16
/** Length prefixes are unsigned LEB128 varints; 3 bytes cover 2^21 > MAX_FRAME_BYTES. Longer prefixes are rejected. */
export const MAX_VARINT_BYTES = 3
/** Largest chunk announced in a FOUND header that a client accepts (same limit as the store). */
export const MAX_CHUNK_BYTES = STORE_MAX_CHUNK_BYTES
/** Longest diagnostic message a server puts in a header (UTF-16 code units; ≤ 256 UTF-8 bytes for ASCII). */
export const MAX_STATUS_MESSAGE_CHARS = 200

/** Keys a server answers in one request, and a client asks for at most. */
export const DEFAULT_MAX_CHUNKS_PER_REQUEST = 256
/** Bound on one request, stream open to close, on both sides. */
export const DEFAULT_TIMEOUT_MS = 30_000
/** A server gives a client this long to send its request frame. */
export const REQUEST_READ_TIMEOUT_MS = 5_000
/** After refusing a request, a server waits this long for the client to close its end before resetting the stream. */
export const REJECT_LINGER_MS = 1_000
/** Requests served at once by one node (beyond: BUSY). */
export const DEFAULT_MAX_CONCURRENT_SERVES = 16
/**
 * Requests one peer may have served at once, over all its connections; one more is refused (BUSY)
 * and the peer is cut off. The fetcher sends at most ⌈keys / 64⌉ requests to a peer at a time.
 */
export const DEFAULT_MAX_SERVES_PER_PEER = 8
/** Requests per second one peer may send (token bucket: refilled at this rate...). */
export const DEFAULT_REQUESTS_PER_SECOND = 200
/** ...holding up to this many): beyond, the request is refused (BUSY) and the peer is cut off. */
export const DEFAULT_REQUEST_BURST = 400
/** Streams of this protocol per connection (registrar limits). */
export const DEFAULT_MAX_INBOUND_STREAMS = 8
export const DEFAULT_MAX_OUTBOUND_STREAMS = 16

/**
 * A reader pauses the stream (stops yamux window updates) beyond this many buffered bytes, so a slow
 * consumer holds at most this plus one receive window. Must exceed MAX_FRAME_BYTES.
 */
export const READ_HIGH_WATER_BYTES = 4 * 1_048_576
/**
 * libp2p resets a paused stream whose internal buffer exceeds `maxReadBufferLength` (default 4 MiB),
 * while yamux lets the remote fill its window (up to 16 MiB by default) after we pause: raise the
 * limit on client streams so that pausing never turns into a reset.
 */
export const CLIENT_STREAM_READ_BUFFER_BYTES = 32 * 1_048_576
