import '../../src/polyfill.js'
import { createHash } from 'node:crypto'
import { expect } from 'chai'
import { createFilter, filterBytes, filterFromBytes, shapeFor } from '../../src/catalog/bloom.js'
import { CATALOG_SEED } from '../../src/catalog/index.js'
import { randomKey } from './helpers.js'

/** XXH64 written from the xxHash specification, independent of the bloom-filters package (BigInt, slow, exact). */
function xxh64 (input: Uint8Array, seed: number): bigint {
  const M = (1n << 64n) - 1n
  const P1 = 11400714785074694791n; const P2 = 14029467366897019727n; const P3 = 1609587929392839161n
  const P4 = 9650029242287828579n; const P5 = 2870177450012600261n
  const rotl = (x: bigint, r: number): bigint => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M
  const u64 = (i: number): bigint => { let v = 0n; for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(input[i + k] as number); return v }
  const u32 = (i: number): bigint => { let v = 0n; for (let k = 3; k >= 0; k--) v = (v << 8n) | BigInt(input[i + k] as number); return v }
  const round = (acc: bigint, v: bigint): bigint => (rotl((acc + v * P2) & M, 31) * P1) & M
  const merge = (acc: bigint, v: bigint): bigint => (((acc ^ round(0n, v)) * P1) + P4) & M
  const s = BigInt(seed)
  const len = input.length
  let i = 0
  let h: bigint
  if (len >= 32) {
    let v1 = (s + P1 + P2) & M; let v2 = (s + P2) & M; let v3 = s; let v4 = (s - P1) & M
    for (; i + 32 <= len; i += 32) { v1 = round(v1, u64(i)); v2 = round(v2, u64(i + 8)); v3 = round(v3, u64(i + 16)); v4 = round(v4, u64(i + 24)) }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & M
    h = merge(merge(merge(merge(h, v1), v2), v3), v4)
  } else {
    h = (s + P5) & M
  }
  h = (h + BigInt(len)) & M
  for (; i + 8 <= len; i += 8) { h ^= round(0n, u64(i)); h = (rotl(h, 27) * P1 + P4) & M }
  if (i + 4 <= len) { h ^= (u32(i) * P1) & M; h = (rotl(h, 23) * P2 + P3) & M; i += 4 }
  for (; i < len; i++) { h ^= (BigInt(input[i] as number) * P5) & M; h = (rotl(h, 11) * P1) & M }
  h ^= h >> 33n; h = (h * P2) & M; h ^= h >> 29n; h = (h * P3) & M; h ^= h >> 32n
  return h
}

/** The bit indices protocols/catalog.md prescribes for a key. */
function specIndices (key: string, bits: number, hashes: number, seed: number): number[] {
  const bytes = new TextEncoder().encode(key)
  const h1 = Number(xxh64(bytes, seed + 1) & 0xffffffffn)
  const h2 = Number(xxh64(bytes, seed + 2) & 0xffffffffn)
  return Array.from({ length: hashes }, (_, i) => (h1 + i * h2 + (i ** 3 - i) / 6) % bits)
}

describe('catalog filter (protocols/catalog.md)', () => {
  it('matches the test vector of the spec', () => {
    const key = createHash('sha256').update('promptmesh').digest('hex')
    expect(xxh64(new TextEncoder().encode(key), 0x504d4331 + 1).toString(16)).to.equal('eb0d03e1643d3f37')
    expect(specIndices(key, 10240, 7, 0x504d4331)).to.deep.equal([10039, 4910, 10022, 4896, 10013, 4894, 10020])
  })

  it('sets exactly the bits the spec prescribes, least significant bit first', () => {
    const shape = shapeFor(100, CATALOG_SEED)
    for (let n = 0; n < 50; n++) {
      const key = randomKey()
      const filter = createFilter(shape)
      filter.add(key)
      const bytes = filterBytes(filter)
      expect(bytes.byteLength).to.equal(shape.bits / 8)
      const set: number[] = []
      bytes.forEach((v, i) => { for (let j = 0; j < 8; j++) if ((v & (1 << j)) !== 0) set.push(i * 8 + j) })
      expect(set).to.deep.equal([...new Set(specIndices(key, shape.bits, shape.hashes, CATALOG_SEED))].sort((a, b) => a - b))
    }
  })

  it('round-trips through bytes and stays near 1 % false positives at capacity', () => {
    const shape = shapeFor(2000, CATALOG_SEED)
    const filter = createFilter(shape)
    const keys = Array.from({ length: shape.capacity }, randomKey)
    for (const key of keys) filter.add(key)
    const copy = filterFromBytes(shape, filterBytes(filter))
    expect(keys.every((k) => copy.has(k))).to.equal(true)
    const trials = 20_000
    let positives = 0
    for (let i = 0; i < trials; i++) if (copy.has(randomKey())) positives++
    expect(positives / trials).to.be.lessThan(0.02)
    expect(shape.bits / shape.capacity).to.be.within(10, 10.01)
  })
})
