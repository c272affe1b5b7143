/** Default block size in tokens: small enough for partial matches, large enough to keep chunk count low. */
export const DEFAULT_BLOCK_TOKENS = 32

/** Default byte budget of the on-disk chunk store (2 GiB, a few thousand 270M-model blocks). */
export const DEFAULT_CACHE_MAX_BYTES = 2 * 1024 ** 3

/** Chunk file header: magic, format version, SHA-256 of the payload, payload length. */
export const CHUNK_FILE_MAGIC = 0x53434d50 // 'PMCS'
export const CHUNK_FILE_VERSION = 1
export const CHUNK_FILE_HEADER_BYTES = 48

/** Largest chunk the store accepts (a 32-token block of the Gemma-3-270M shape is ~590 KB). */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024
