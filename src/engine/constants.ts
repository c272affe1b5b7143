import { availableParallelism } from 'node:os'

/**
 * Threads for evaluation. Always set explicitly: node-llama-cpp's default (4 on a 2-core machine)
 * made generation ~100x slower here.
 */
export const DEFAULT_THREADS = Math.max(1, Math.min(4, availableParallelism()))

/** Context size when neither the user nor the model says less. */
export const DEFAULT_CONTEXT_SIZE = 4096

/** Default batch size: prompt tokens evaluated per llama_decode call. */
export const DEFAULT_BATCH_SIZE = 512

/** Tokens generated when the caller does not say. */
export const DEFAULT_MAX_TOKENS = 32

/** tmpfs for state files (node-llama-cpp only saves/loads states through files). */
export const DEFAULT_STATE_TMP_DIR = '/dev/shm'
