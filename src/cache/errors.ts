/** A stored chunk failed verification (truncated, bit-flipped, wrong header); it has been removed. */
export class ChunkCorruptError extends Error {
  static override name = 'ChunkCorruptError'
  override name = 'ChunkCorruptError'
}

/** Writing a chunk failed (full disk, permissions); nothing partial was left behind. */
export class StoreWriteError extends Error {
  static override name = 'StoreWriteError'
  override name = 'StoreWriteError'
}
