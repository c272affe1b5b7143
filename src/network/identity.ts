import { randomBytes } from 'node:crypto'
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { PEER_KEY_FILE } from './constants.js'
import { PeerKeyError } from './errors.js'
import type { PrivateKey } from '@libp2p/interface'

/**
 * The node's persistent identity: `<dataDir>/peer-key`, created once (Ed25519, mode 0600, written
 * atomically) and reused, so the peer id survives restarts. A file that exists but does not parse is
 * an error rather than silently replaced: peers and operators know the node by its id.
 */
export async function loadOrCreatePeerKey (dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, PEER_KEY_FILE)
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PeerKeyError(`cannot read ${path}: ${(err as Error).message}`)
  }
  if (bytes != null) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new PeerKeyError(`${path} is not a libp2p private key (${(err as Error).message}); move it away to create a new identity`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dataDir, { recursive: true })
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
    // link() fails if the file appeared meanwhile (another process won): use theirs then
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return await loadOrCreatePeerKey(dataDir)
    throw err
  } finally {
    await rm(tmp, { force: true })
  }
  return key
}
