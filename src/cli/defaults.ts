import { homedir } from 'node:os'
import { join } from 'node:path'

/** Where a node keeps its identity and chunk store unless told otherwise. */
export const DEFAULT_DATA_DIR = join(homedir(), '.promptmesh')
export const DEFAULT_API_HOST = '127.0.0.1'
export const DEFAULT_API_PORT = 8080
export const DEFAULT_API_URL = `http://${DEFAULT_API_HOST}:${DEFAULT_API_PORT}`

/** Gemma-3 270M, the model of the paper, as a Q8_0 GGUF (downloaded once; needs internet). */
export const DEFAULT_MODEL = 'hf:unsloth/gemma-3-270m-it-GGUF:Q8_0'
