import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

interface Entry { path: string, bytes: number }

/**
 * Assembled prefix states kept as files on tmpfs, LRU within a byte budget. A prefix that was assembled
 * once (read + verify + interleave ~11 MB for 600 tokens of the 270M shape: tens of ms) is loaded again
 * straight from its file (a few ms) while it stays hot. Files are validated before they are kept.
 */
export class StateFiles {
  private readonly entries = new Map<string, Entry>()
  private total = 0

  constructor (private readonly dir: string, readonly maxBytes: number) {}

  get (key: string): string | undefined {
    const e = this.entries.get(key)
    if (e == null) return undefined
    this.entries.delete(key)
    this.entries.set(key, e)
    return e.path
  }

  /** Writes a state file and returns its path; it stays until evicted. */
  async put (key: string, bytes: Buffer): Promise<string> {
    const path = join(this.dir, `prefix-${randomBytes(6).toString('hex')}.ggsq`)
    await writeWhole(path, bytes)
    if (bytes.length > this.maxBytes) return path // too big to keep: caller loads it once, drop() removes it
    await this.drop(key)
    this.entries.set(key, { path, bytes: bytes.length })
    this.total += bytes.length
    while (this.total > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string
      await this.drop(oldest)
    }
    return path
  }

  has (key: string): boolean { return this.entries.has(key) }

  kept (path: string): boolean {
    for (const e of this.entries.values()) if (e.path === path) return true
    return false
  }

  async drop (key: string): Promise<void> {
    const e = this.entries.get(key)
    if (e == null) return
    this.entries.delete(key)
    this.total -= e.bytes
    await rm(e.path, { force: true })
  }

  get bytes (): number { return this.total }

  async clear (): Promise<void> {
    for (const key of [...this.entries.keys()]) await this.drop(key)
  }
}

const STATE_DIR_PREFIX = 'promptmesh-'
const OWNER_FILE = 'owner.pid'

/**
 * A fresh state directory under `base`, marked with this process's pid. Directories left by promptmesh
 * processes that are gone (killed, crashed) are removed first: on tmpfs they hold RAM, up to the
 * hot-state budget each, which a Pi cannot spare. Returns the new directory and how many were removed.
 */
export async function createStateDir (base: string): Promise<{ dir: string, removedStale: number }> {
  let removedStale = 0
  for (const name of await readdir(base).catch(() => [] as string[])) {
    if (!name.startsWith(STATE_DIR_PREFIX)) continue
    const pid = Number.parseInt(await readFile(join(base, name, OWNER_FILE), 'utf8').catch(() => ''), 10)
    // unmarked directories may belong to an older version still running: left alone
    if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue
    await rm(join(base, name), { recursive: true, force: true }).then(() => { removedStale++ }, () => {})
  }
  const dir = await mkdtemp(join(base, STATE_DIR_PREFIX))
  await writeFile(join(dir, OWNER_FILE), String(process.pid))
  return { dir, removedStale }
}

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, it is just not ours
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Writes `bytes` to a new file with as few system calls as the kernel allows (writeFile goes through
 * the thread pool in 512 KiB pieces: 30+ round trips for a state of a few hundred tokens).
 */
async function writeWhole (path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'w')
  try {
    let at = 0
    while (at < bytes.length) at += (await fh.write(bytes, at, bytes.length - at, at)).bytesWritten
  } finally {
    await fh.close()
  }
}

/**
 * Reads a whole file into `into` when it fits (else into fresh memory) with as few system calls as
 * the kernel allows; returns the bytes read (a view of `into` when it fit).
 */
export async function readWhole (path: string, into?: Buffer): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const { size } = await fh.stat()
    const out = into != null && size <= into.length ? into.subarray(0, size) : Buffer.allocUnsafe(size)
    for (let at = 0; at < size;) {
      const { bytesRead } = await fh.read(out, at, size - at, at)
      if (bytesRead === 0) throw new Error(`${path} shrank while it was read`)
      at += bytesRead
    }
    return out
  } finally {
    await fh.close()
  }
}
