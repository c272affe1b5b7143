/** The bytes are not a llama.cpp sequence state this codec understands (unknown version or layout). */
export class UnsupportedStateLayoutError extends Error {
  static override name = 'UnsupportedStateLayoutError'
  override name = 'UnsupportedStateLayoutError'
}

/** A state or chunk is truncated, inconsistent or otherwise malformed. */
export class InvalidStateError extends Error {
  static override name = 'InvalidStateError'
  override name = 'InvalidStateError'
}

/** Chunks that do not fit together (another layout, a gap, another block size). */
export class ChunkMismatchError extends Error {
  static override name = 'ChunkMismatchError'
  override name = 'ChunkMismatchError'
}

/** llama.cpp refused a state file (the reason is only in llama.cpp's log). */
export class StateLoadError extends Error {
  static override name = 'StateLoadError'
  override name = 'StateLoadError'
}

/** The model file cannot be found, read or loaded. */
export class ModelLoadError extends Error {
  static override name = 'ModelLoadError'
  override name = 'ModelLoadError'
}
