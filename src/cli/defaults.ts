import { homedir } from 'node:os'
import { join } from 'node:path'

/** Where a node keeps its identity and chunk store unless told otherwise. */
export const DEFAULT_DATA_DIR = join(homedir(), '.promptmesh')
export const DEFAULT_API_HOST = '127.0.0.1'
export const DEFAULT_API_PORT = 8080
export const DEFAULT_API_URL = `http://${DEFAULT_API_HOST}:${DEFAULT_API_PORT}`
