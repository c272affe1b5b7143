import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_VARINT_BYTES } from './constants.js'
import { FrameTooLargeError, KvProtocolError, StreamEndedError } from './errors.js'
import type { AbortOptions, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** What it-pipe stages pass along. */
export type ByteSource = AsyncIterable<Uint8Array | Uint8ArrayList> | Iterable<Uint8Array | Uint8ArrayList>

/** Unsigned LEB128 (the multiformats unsigned-varint used by every libp2p length prefix). */
export function encodeVarint (value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot encode ${value} as an unsigned varint`)
  const out: number[] = []
  let v = value
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/** A frame: varint length prefix then the payload (not copied). */
export function encodeFrame (payload: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  return new Uint8ArrayList(encodeVarint(payload.byteLength), payload)
}

/** Copies a list into `target` at `offset` without flattening it first. */
export function copyInto (list: Uint8ArrayList, target: Uint8Array, offset: number): void {
  let at = offset
  for (const part of list) {
    target.set(part, at)
    at += part.byteLength
  }
}

/**
 * Incremental decoder of length-prefixed frames: bytes in (`push`), payloads out (`next`). No I/O, so
 * it is the one place where the framing rules live and can be fuzzed on its own.
 *
 * A prefix is at most MAX_VARINT_BYTES long and minimally encoded; a frame longer than the limit the
 * caller gives for its position is refused as soon as its prefix is complete, before any payload is
 * buffered for it.
 */
export class FrameDecoder {
  private readonly buffer = new Uint8ArrayList()

  push (data: Uint8Array | Uint8ArrayList): void {
    this.buffer.append(data)
  }

  /** Bytes buffered and not yet returned. */
  get bufferedBytes (): number { return this.buffer.byteLength }

  /**
   * The next frame's payload, at most `maxBytes` long, or undefined when more bytes are needed.
   * Throws FrameTooLargeError (the prefix announces more than `maxBytes`, or is longer than
   * MAX_VARINT_BYTES) or KvProtocolError (a prefix that is not minimally encoded).
   */
  next (maxBytes: number): Uint8ArrayList | undefined {
    let length = 0
    let prefixBytes = 0
    for (;;) {
      if (prefixBytes >= this.buffer.byteLength) return undefined
      const byte = this.buffer.get(prefixBytes)
      length += (byte & 0x7f) * 2 ** (7 * prefixBytes)
      prefixBytes++
      if ((byte & 0x80) === 0) {
        if (byte === 0 && prefixBytes > 1) throw new KvProtocolError('length prefix is not minimally encoded')
        break
      }
      // a longer (minimal) prefix means a length ≥ 2^21, beyond every limit of the protocol
      if (prefixBytes >= MAX_VARINT_BYTES) throw new FrameTooLargeError(`length prefix of more than ${MAX_VARINT_BYTES} bytes: the frame exceeds the limit of ${maxBytes}`)
    }
    if (length > maxBytes) throw new FrameTooLargeError(`frame of ${length} bytes exceeds the limit of ${maxBytes}`)
    if (this.buffer.byteLength < prefixBytes + length) return undefined
    const payload = this.buffer.sublist(prefixBytes, prefixBytes + length)
    this.buffer.consume(prefixBytes + length)
    return payload
  }

  /** Call at the end of the input: throws StreamEndedError when a partial frame is left over. */
  end (): void {
    if (this.buffer.byteLength > 0) throw new StreamEndedError(`stream ended inside a frame (${this.buffer.byteLength} bytes of it received)`)
  }
}

/** The limit for the next frame, read each time a frame is decoded (limits depend on the position). */
export type FrameLimit = number | (() => number)

/**
 * it-pipe transform: length-prefixed frames out of a byte source. Ends cleanly only on a frame
 * boundary; throws FrameTooLargeError, KvProtocolError or StreamEndedError otherwise (and whatever
 * the source throws). Reads no further into the source than the frame being decoded needs.
 */
export function decodeFrames (limit: FrameLimit): (source: ByteSource) => AsyncGenerator<Uint8ArrayList, void, undefined> {
  const max = typeof limit === 'number' ? () => limit : limit
  return async function * (source) {
    const decoder = new FrameDecoder()
    for await (const data of source) {
      decoder.push(data)
      for (let frame = decoder.next(max()); frame != null; frame = decoder.next(max())) yield frame
    }
    decoder.end()
  }
}

export interface StreamSourceInit {
  /** pause the stream beyond this many bytes received and not yet consumed */
  highWaterBytes: number
  signal?: AbortSignal
}

/**
 * it-pipe source over a libp2p 3 stream's incoming bytes, with bounded buffering.
 *
 * libp2p 3 streams push 'message' events with no receiver back-pressure (and `messageStreamToDuplex`
 * from @libp2p/utils queues them without bound), so this source keeps its own queue and pauses the
 * stream (yamux then withholds window updates) when the queue grows beyond `highWaterBytes`,
 * resuming when the consumer has taken everything. Ends when the remote closes its writing side;
 * throws the stream's error (after everything received before it was consumed) or the signal's reason.
 * Detaches from the stream when the consumer stops early.
 */
export async function * streamSource (stream: Stream, init: StreamSourceInit): AsyncGenerator<Uint8Array | Uint8ArrayList, void, undefined> {
  const queue: Array<Uint8Array | Uint8ArrayList> = []
  let queuedBytes = 0
  let ended = false
  let error: Error | undefined
  let wake: (() => void) | undefined
  const notify = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onMessage = (evt: StreamMessageEvent): void => {
    queue.push(evt.data)
    queuedBytes += evt.data.byteLength
    if (queuedBytes > init.highWaterBytes && stream.readStatus === 'readable') stream.pause()
    notify()
  }
  const onClose = (evt: StreamCloseEvent): void => {
    if (evt.error != null) error = evt.error
    ended = true
    notify()
  }
  const onEnd = (): void => {
    ended = true
    notify()
  }
  stream.addEventListener('message', onMessage)
  stream.addEventListener('close', onClose)
  stream.addEventListener('remoteCloseWrite', onEnd)
  stream.addEventListener('end', onEnd)
  // libp2p may have closed the remote end before we attached
  if (stream.remoteWriteStatus === 'closed' && stream.readBufferLength === 0) ended = true
  const signal = init.signal
  try {
    for (;;) {
      const next = queue.shift()
      if (next != null) {
        queuedBytes -= next.byteLength
        yield next
        continue
      }
      if (stream.readStatus === 'paused') {
        // resuming dispatches what libp2p held back, synchronously
        stream.resume()
        continue
      }
      if (error != null) throw error
      if (ended) return
      signal?.throwIfAborted()
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          wake = undefined
          reject(signal?.reason)
        }
        wake = () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('close', onClose)
    stream.removeEventListener('remoteCloseWrite', onEnd)
    stream.removeEventListener('end', onEnd)
  }
}

/**
 * it-pipe sink onto a libp2p 3 stream: sends everything the source yields, waiting for 'drain'
 * whenever the stream's send buffer is full (back-pressure), so a slow reader holds the producer
 * back instead of growing a buffer. Does not close the stream.
 */
export function streamSink (stream: Stream, options: AbortOptions = {}): (source: ByteSource) => Promise<void> {
  return async (source) => {
    for await (const data of source) {
      if (!stream.send(data)) await stream.onDrain(options)
    }
  }
}

/** Sends, then waits for 'drain' when the stream's buffer is full (libp2p 3 back-pressure). */
export async function sendWithBackpressure (stream: Stream, data: Uint8Array | Uint8ArrayList, options: AbortOptions): Promise<void> {
  if (!stream.send(data)) {
    await stream.onDrain(options)
  }
}
