import { randomBytes } from 'node:crypto'
import { deflateRawSync } from 'node:zlib'
import { expect } from 'chai'
import { ChunkEncodingError, decodePlanes, encodePlanes } from '../../src/transfer/encoding.js'
import { f16Payload } from '../fixtures/f16.js'

describe('chunk encoding planes2-deflate', () => {
  it('decodes to the very bytes it encoded, for KV-shaped chunks of any length, and saves ≥ 10 % on them', () => {
    for (const size of [64, 65, 1000, 1001, 1006, 10_001, 10_007, 590_488]) {
      const bytes = f16Payload(size, size)
      const encoded = encodePlanes(bytes)
      // a few dozen bytes do not pay for the Huffman table: sent as they are
      if (size < 1000 && encoded == null) continue
      expect(encoded, `size ${size}`).to.be.instanceOf(Uint8Array)
      expect(decodePlanes(encoded as Uint8Array, size).equals(bytes), `size ${size}`).to.equal(true)
      if (size >= 10_000) expect((encoded as Uint8Array).byteLength / size, `size ${size}`).to.be.below(0.9)
    }
  })

  it('decodes from any offset of a received buffer (frames are not aligned)', () => {
    const bytes = f16Payload(7, 20_000)
    const encoded = encodePlanes(bytes) as Uint8Array
    const shifted = Buffer.alloc(encoded.byteLength + 1)
    shifted.set(encoded, 1)
    const out = decodePlanes(shifted.subarray(1), bytes.length)
    expect(out.equals(bytes)).to.equal(true)
    // and encodes from one
    const odd = Buffer.alloc(bytes.length + 1)
    bytes.copy(odd, 1)
    expect(decodePlanes(encodePlanes(odd.subarray(1)) as Uint8Array, bytes.length).equals(bytes)).to.equal(true)
  })

  it('leaves incompressible and tiny chunks as they are', () => {
    expect(encodePlanes(randomBytes(100_000))).to.equal(undefined)
    expect(encodePlanes(f16Payload(1, 32))).to.equal(undefined)
  })

  it('refuses malformed encodings with a typed error, and never inflates past the declared size', () => {
    const bytes = f16Payload(3, 10_000)
    const good = Buffer.from(encodePlanes(bytes) as Uint8Array)
    const packed = good.readUInt32LE(0)
    const bad: Array<[string, Buffer, number]> = [
      ['shorter than its prefix', good.subarray(0, 3), bytes.length],
      ['truncated', good.subarray(0, good.length - 1), bytes.length],
      ['declared for another size', good, bytes.length + 2],
      ['a packed length beyond the data', (() => { const b = Buffer.from(good); b.writeUInt32LE(packed + 10, 0); return b })(), bytes.length],
      ['a corrupt deflate stream', (() => { const b = Buffer.from(good); b.fill(0xff, 4, 40); return b })(), bytes.length]
    ]
    // a deflate stream that inflates to 50 MB, framed for a chunk of 1,000 bytes
    const bomb = deflateRawSync(Buffer.alloc(50_000_000))
    const framed = Buffer.alloc(4 + bomb.length + 500)
    framed.writeUInt32LE(bomb.length, 0)
    bomb.copy(framed, 4)
    bad.push(['a decompression bomb', framed, 1000])
    // a stream that inflates to fewer bytes than the plane
    const short = deflateRawSync(Buffer.alloc(100))
    const shortFramed = Buffer.alloc(4 + short.length + 500)
    shortFramed.writeUInt32LE(short.length, 0)
    short.copy(shortFramed, 4)
    bad.push(['too few bytes', shortFramed, 1000])
    for (const [what, encoded, size] of bad) {
      expect(() => decodePlanes(encoded, size), what).to.throw(ChunkEncodingError)
    }
  })
})
