import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeWhole } from '../file-io.js'

interface Entry { path: string, bytes: number, covers: string[] }

/**
 * Assembled prefix states kept as files on tmpfs, LRU within a byte budget. A prefix that was assembled
 * once (read + verify + interleave ~11 MB for 600 tokens of the 270M shape: tens of ms) is loaded again
 * straight from its file (a few ms) while it stays hot. Files are validated before they are kept.
 */
export class StateFiles {
  private readonly entries = new Map<string, Entry>()
  /** block key → the entry (newest) whose state begins with the prefix that block ends */
  private readonly covering = new Map<string, string>()
  private total = 0

  constructor (private readonly dir: string, readonly maxBytes: number) {}

  get (key: string): string | undefined {
    const e = this.entries.get(key)
    if (e == null) return undefined
    this.entries.delete(key)
    this.entries.set(key, e)
    return e.path
  }

  /**
   * Writes a state file and returns its path; it stays until evicted. `covers`: the block keys of the
   * prefixes it begins with (see `beginning`).
   */
  async put (key: string, bytes: Buffer, covers: string[] = []): Promise<string> {
    const path = join(this.dir, `prefix-${randomBytes(6).toString('hex')}.ggsq`)
    await writeWhole(path, bytes)
    if (bytes.length > this.maxBytes) return path // too big to keep: caller loads it once, drop() removes it
    await this.keep(key, path, bytes.length, covers)
    return path
  }

  /**
   * A kept state that begins with the prefix ending in chunk `blockKey` and may hold more positions:
   * for taking that prefix out of it (StateAssembly.placePrefix), never for loading as it is. (States
   * llama.cpp saves cannot serve: their SWA layers keep only the window's last cells.)
   */
  beginning (blockKey: string): { key: string, path: string } | undefined {
    const key = this.covering.get(blockKey)
    const path = key != null ? this.get(key) : undefined
    return key != null && path != null ? { key, path } : undefined
  }

  private async keep (key: string, path: string, bytes: number, covers: string[]): Promise<void> {
    await this.drop(key)
    this.entries.set(key, { path, bytes, covers })
    for (const c of covers) this.covering.set(c, key)
    this.total += bytes
    while (this.total > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string
      await this.drop(oldest)
    }
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
    for (const c of e.covers) {
      if (this.covering.get(c) !== key) continue
      // another kept state may begin with that prefix too (the most recently used wins)
      let other: string | undefined
      for (const [k, x] of this.entries) if (x.covers.includes(c)) other = k
      if (other != null) this.covering.set(c, other)
      else this.covering.delete(c)
    }
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
