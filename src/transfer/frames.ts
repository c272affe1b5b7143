import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_VARINT_BYTES } from './constants.js'
import { FrameTooLargeError, KvProtocolError, StreamEndedError } from './errors.js'
import type { AbortOptions, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

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

export interface FrameReaderInit {
  /** pause the stream beyond this many buffered bytes */
  highWaterBytes: number
}

/**
 * Reads length-prefixed frames from a libp2p 3 stream with bounded buffering.
 *
 * libp2p 3 streams push 'message' events with no receiver back-pressure, so the reader keeps its own
 * buffer and pauses the stream (yamux then withholds window updates) when it grows beyond
 * `highWaterBytes`, resuming when a read needs more. Every wait is raced against the caller's signal;
 * a stream error is reported only once buffered bytes no longer satisfy a read.
 */
export class FrameReader {
  private readonly stream: Stream
  private readonly buffer = new Uint8ArrayList()
  private readonly highWaterBytes: number
  private ended = false
  private error?: Error
  private wake?: () => void
  private released = false

  constructor (stream: Stream, init: FrameReaderInit) {
    this.stream = stream
    this.highWaterBytes = init.highWaterBytes
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onClose)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    // libp2p may have closed the remote end before we attached
    if (stream.remoteWriteStatus === 'closed' && stream.readBufferLength === 0) this.ended = true
  }

  /** Bytes buffered and not yet read. */
  get bufferedBytes (): number { return this.buffer.byteLength }

  /** Detaches from the stream; later data is left to libp2p (whose own buffer limit then applies). */
  release (): void {
    if (this.released) return
    this.released = true
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onClose)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.notify()
  }

  /**
   * Reads the next frame's payload, at most `maxBytes` long. Resolves undefined when the stream ended
   * cleanly on a frame boundary; throws FrameTooLargeError, KvProtocolError (bad prefix) or
   * StreamEndedError (ended mid-frame), or the signal's reason.
   */
  async next (maxBytes: number, options: AbortOptions = {}): Promise<Uint8ArrayList | undefined> {
    // length prefix: read byte by byte from the buffer, waiting only when it is empty
    let length = 0
    let prefixBytes = 0
    for (;;) {
      if (!(await this.need(prefixBytes + 1, options))) {
        if (prefixBytes === 0) return undefined
        throw new StreamEndedError('stream ended inside a length prefix')
      }
      const byte = this.buffer.get(prefixBytes)
      length += (byte & 0x7f) * 2 ** (7 * prefixBytes)
      prefixBytes++
      if ((byte & 0x80) === 0) break
      // a longer (minimal) prefix means a length ≥ 2^21, beyond every limit of the protocol
      if (prefixBytes >= MAX_VARINT_BYTES) throw new FrameTooLargeError(`length prefix of more than ${MAX_VARINT_BYTES} bytes: the frame exceeds the limit of ${maxBytes}`)
    }
    if (length > maxBytes) throw new FrameTooLargeError(`frame of ${length} bytes exceeds the limit of ${maxBytes}`)
    if (!(await this.need(prefixBytes + length, options))) {
      throw new StreamEndedError(`stream ended after ${this.buffer.byteLength - prefixBytes} of ${length} frame bytes`)
    }
    const payload = this.buffer.sublist(prefixBytes, prefixBytes + length)
    this.buffer.consume(prefixBytes + length)
    return payload
  }

  /** True once the remote has finished sending and everything was read. */
  async atEnd (options: AbortOptions = {}): Promise<boolean> {
    return !(await this.need(1, options))
  }

  /** Waits until `bytes` are buffered; false when the stream ended first. */
  private async need (bytes: number, options: AbortOptions): Promise<boolean> {
    while (this.buffer.byteLength < bytes) {
      if (this.released) throw new StreamEndedError('reader released')
      if (this.stream.readStatus === 'paused') {
        // resuming dispatches what libp2p held back, synchronously
        this.stream.resume()
        continue
      }
      if (this.error != null) throw this.error
      if (this.ended) return false
      await this.waitForData(options.signal)
    }
    return true
  }

  private async waitForData (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.wake = undefined
        reject(signal?.reason)
      }
      this.wake = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private notify (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    this.buffer.append(evt.data)
    if (this.buffer.byteLength > this.highWaterBytes && this.stream.readStatus === 'readable') {
      this.stream.pause()
    }
    this.notify()
  }

  private readonly onClose = (evt: StreamCloseEvent): void => {
    if (evt.error != null) this.error = evt.error
    this.ended = true
    this.notify()
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.ended = true
    this.notify()
  }
}

/** Sends, then waits for 'drain' when the stream's buffer is full (libp2p 3 back-pressure). */
export async function sendWithBackpressure (stream: Stream, data: Uint8Array | Uint8ArrayList, options: AbortOptions): Promise<void> {
  if (!stream.send(data)) {
    await stream.onDrain(options)
  }
}
