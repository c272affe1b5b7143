import { randomBytes } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { SWARM_KEY_ENCODING, SWARM_KEY_HEADER } from './constants.js'
import { SwarmKeyError } from './errors.js'

/** Bytes of the secret in a swarm key. */
export const SWARM_KEY_BYTES = 32

/**
 * A new swarm key in the `swarm.key` format every libp2p implementation reads (go-ipfs private
 * networks, @libp2p/pnet): `/key/swarm/psk/1.0.0/`, `/base16/`, 64 lowercase hex digits, each on its line.
 */
export function generateSwarmKey (): Uint8Array {
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_ENCODING}\n${randomBytes(SWARM_KEY_BYTES).toString('hex')}\n`)
}

/**
 * Checks a swarm key and returns it in canonical form (what `preSharedKey({ psk })` takes). Stricter
 * than @libp2p/pnet, which ignores the first two lines: a file in another format or encoding is an
 * error here rather than a key that silently differs from the other nodes'.
 */
export function parseSwarmKey (bytes: Uint8Array): Uint8Array {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
  const lines = text.split(/\r\n|\r|\n/).map((l) => l.trim()).filter((l) => l !== '')
  if (lines.length !== 3) throw new SwarmKeyError(`a swarm key has 3 lines (${SWARM_KEY_HEADER}, ${SWARM_KEY_ENCODING}, 64 hex digits), found ${lines.length}`)
  if (lines[0] !== SWARM_KEY_HEADER) throw new SwarmKeyError(`a swarm key starts with ${SWARM_KEY_HEADER}`)
  if (lines[1] !== SWARM_KEY_ENCODING) throw new SwarmKeyError(`only ${SWARM_KEY_ENCODING} swarm keys are supported, found ${JSON.stringify(lines[1]?.slice(0, 40))}`)
  const hex = (lines[2] as string).toLowerCase()
  if (!new RegExp(`^[0-9a-f]{${SWARM_KEY_BYTES * 2}}$`).test(hex)) throw new SwarmKeyError(`the key must be ${SWARM_KEY_BYTES * 2} hex digits`)
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_ENCODING}\n${hex}`)
}

/** Reads and checks a swarm key file. */
export async function readSwarmKey (path: string): Promise<Uint8Array> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new SwarmKeyError(`cannot read swarm key ${path}: ${(err as Error).message}`)
  }
  try {
    return parseSwarmKey(bytes)
  } catch (err) {
    throw new SwarmKeyError(`${path}: ${(err as Error).message}`)
  }
}

/**
 * A warning when the swarm key file may be read by other users: whoever reads it can join the private
 * mesh (ssh refuses such private keys; a node warns, so that a deployment is not broken by it).
 */
export async function swarmKeyPermissionWarning (path: string): Promise<string | undefined> {
  if (process.platform === 'win32') return undefined
  const mode = (await stat(path)).mode & 0o777
  if ((mode & 0o077) === 0) return undefined
  return `swarm key ${path} is readable by ${(mode & 0o007) !== 0 ? 'every user' : 'its group'} (mode ${mode.toString(8).padStart(4, '0')}): whoever reads it can join the mesh; run chmod 600 ${path}`
}

/** Writes a new swarm key to `path` (mode 0600); never overwrites an existing file. */
export async function writeSwarmKey (path: string): Promise<void> {
  try {
    await writeFile(path, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new SwarmKeyError(code === 'EEXIST' ? `${path} exists: not overwriting a swarm key` : `cannot write ${path}: ${(err as Error).message}`)
  }
}
