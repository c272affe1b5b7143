import bf from 'bloom-filters'
import { BITS_PER_KEY, CAPACITY_HEADROOM, HASHES, MIN_CAPACITY } from './constants.js'
import type { BloomFilter as BloomFilterType } from 'bloom-filters'

const { BloomFilter } = bf

export type KeyFilter = BloomFilterType

export interface FilterShape {
  /** m, a multiple of 8 */
  bits: number
  /** k */
  hashes: number
  seed: number
}

/** The filter shape for `count` keys, with headroom, ≈BITS_PER_KEY bits per key. */
export function shapeFor (count: number, seed: number): FilterShape & { capacity: number } {
  const capacity = Math.max(MIN_CAPACITY, Math.ceil(count * CAPACITY_HEADROOM))
  const bits = Math.ceil((capacity * BITS_PER_KEY) / 8) * 8
  return { capacity, bits, hashes: HASHES, seed }
}

/** An empty filter of this shape. Hashing is the bloom-filters package's (see protocols/catalog.md). */
export function createFilter (shape: FilterShape): KeyFilter {
  const filter = new BloomFilter(shape.bits, shape.hashes)
  filter.seed = shape.seed
  return filter
}

/**
 * The bit array, `ceil(m / 8)` bytes, bit i at `bytes[i >> 3] & (1 << (i & 7))`: the package's own
 * layout (it has only a base64 JSON export, ~35 % larger).
 */
export function filterBytes (filter: KeyFilter): Uint8Array<ArrayBuffer> {
  return new Uint8Array(filter._filter.array)
}

/** A filter from a received shape and bit array; the caller has validated the sizes. */
export function filterFromBytes (shape: FilterShape, bytes: Uint8Array): KeyFilter {
  const filter = createFilter(shape)
  if (filter._filter.array.byteLength !== bytes.byteLength) {
    throw new RangeError(`filter of ${shape.bits} bits needs ${filter._filter.array.byteLength} bytes, got ${bytes.byteLength}`)
  }
  filter._filter.array.set(bytes)
  return filter
}
