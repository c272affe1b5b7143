import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { FileShrankError, readWhole, writeAll } from '../file-io.js'
import { CHUNK_FILE_HEADER_BYTES, CHUNK_FILE_MAGIC, CHUNK_FILE_VERSION, DEFAULT_CACHE_MAX_BYTES, MAX_CHUNK_BYTES } from './constants.js'
import { ChunkCorruptError, StoreWriteError } from './errors.js'
import { isChunkKey } from './keys.js'
import type { Logger } from '@libp2p/interface'

export interface ChunkStoreInit {
  /** directory of the store; created if missing */
  dir: string
  /**
   * byte budget: least recently used chunks are evicted beyond it
   * @default 2 GiB
   */
  maxBytes?: number
  log?: Logger
}

export interface ChunkStoreStats {
  chunks: number
  bytes: number
  maxBytes: number
  evictions: number
  /** chunk files that failed verification (truncated, bit-flipped, bad header) and were removed */
  corruptRemoved: number
  /** chunks whose file had vanished (deleted behind the store's back) and were forgotten */
  missingRemoved: number
  /** puts that failed (full disk, permissions); nothing partial was left */
  writeErrors: number
  /** the latest of those problems, in words, or null */
  lastProblem: string | null
}

export interface ChunkStoreEvents {
  added: [key: string]
  removed: [key: string]
}

interface Entry { bytes: number }

/**
 * Content-addressed chunk store on disk. One file per chunk, `chunks/<2 hex>/<key>`, with a header
 * carrying the payload's SHA-256 so that a truncated or bit-flipped file is detected on read and
 * removed rather than served. Writes go to `tmp/` and are renamed into place (atomic on POSIX), so a
 * kill -9 leaves either the whole chunk or nothing; `open()` clears leftovers and rebuilds the index.
 * The index is a Map in LRU order (oldest first), seeded from file mtimes, which reads refresh.
 *
 * Faults never escape as exceptions from reads: a full disk fails the put (StoreWriteError, the
 * temporary file removed), a file damaged, replaced or deleted behind the store's back is removed and
 * forgotten on the read that finds it, and each such problem is counted in `stats()` (with the latest
 * one in words) and logged. The byte budget counts what the index holds and is enforced after every put.
 */
export class ChunkStore extends EventEmitter<ChunkStoreEvents> {
  readonly dir: string
  readonly maxBytes: number
  private readonly index = new Map<string, Entry>()
  private readonly log?: Logger
  private totalBytes = 0
  private evictions = 0
  private corruptRemoved = 0
  private missingRemoved = 0
  private writeErrors = 0
  private lastProblem: string | null = null

  private constructor (init: ChunkStoreInit) {
    super()
    this.dir = init.dir
    this.maxBytes = init.maxBytes ?? DEFAULT_CACHE_MAX_BYTES
    this.log = init.log
  }

  static async open (init: ChunkStoreInit): Promise<ChunkStore> {
    const store = new ChunkStore(init)
    await store.rebuild()
    return store
  }

  private chunkPath (key: string): string { return join(this.dir, 'chunks', key.slice(0, 2), key) }

  private async rebuild (): Promise<void> {
    await mkdir(join(this.dir, 'chunks'), { recursive: true })
    // whatever is in tmp/ is an interrupted write
    await rm(join(this.dir, 'tmp'), { recursive: true, force: true })
    await mkdir(join(this.dir, 'tmp'), { recursive: true })
    const found: Array<{ key: string, bytes: number, mtime: number }> = []
    for (const shard of await readdir(join(this.dir, 'chunks'))) {
      const shardDir = join(this.dir, 'chunks', shard)
      let names: string[]
      try { names = await readdir(shardDir) } catch { continue }
      for (const name of names) {
        const path = join(shardDir, name)
        if (!isChunkKey(name) || name.slice(0, 2) !== shard) { await rm(path, { force: true, recursive: true }); continue }
        const ok = await this.headerLooksValid(path)
        if (ok == null) {
          this.problem(`removed corrupt chunk file ${path} at open`)
          this.corruptRemoved++
          await rm(path, { force: true, recursive: true })
          continue
        }
        found.push({ key: name, bytes: ok.size, mtime: ok.mtime })
      }
    }
    found.sort((a, b) => a.mtime - b.mtime)
    for (const f of found) { this.index.set(f.key, { bytes: f.bytes }); this.totalBytes += f.bytes }
    await this.evict()
  }

  /** Cheap check at open: magic, version and declared length match the file size. Hashes are checked on read. */
  private async headerLooksValid (path: string): Promise<{ size: number, mtime: number } | undefined> {
    const fh = await open(path, 'r').catch(() => undefined)
    if (fh == null) return undefined
    try {
      const st = await fh.stat()
      // never read a file that no put could have written (it would be read whole into memory)
      if (!st.isFile() || st.size < CHUNK_FILE_HEADER_BYTES || st.size > CHUNK_FILE_HEADER_BYTES + MAX_CHUNK_BYTES) return undefined
      const head = Buffer.alloc(CHUNK_FILE_HEADER_BYTES)
      await fh.read(head, 0, CHUNK_FILE_HEADER_BYTES, 0)
      if (head.readUInt32LE(0) !== CHUNK_FILE_MAGIC || head.readUInt32LE(4) !== CHUNK_FILE_VERSION) return undefined
      if (Number(head.readBigUInt64LE(40)) + CHUNK_FILE_HEADER_BYTES !== st.size) return undefined
      return { size: st.size, mtime: st.mtimeMs }
    } finally {
      await fh.close()
    }
  }

  has (key: string): boolean { return this.index.has(key) }

  /** Keys held, least recently used first. */
  keys (): IterableIterator<string> { return this.index.keys() }

  get count (): number { return this.index.size }
  get bytes (): number { return this.totalBytes }

  stats (): ChunkStoreStats {
    return {
      chunks: this.index.size,
      bytes: this.totalBytes,
      maxBytes: this.maxBytes,
      evictions: this.evictions,
      corruptRemoved: this.corruptRemoved,
      missingRemoved: this.missingRemoved,
      writeErrors: this.writeErrors,
      lastProblem: this.lastProblem
    }
  }

  /** Records and logs a problem the store recovered from (it never throws for these). */
  private problem (message: string): void {
    this.lastProblem = `${new Date().toISOString()} ${message}`
    this.log?.error('%s', message)
  }

  /**
   * Returns the verified payload, or undefined when the chunk is absent. A chunk that fails
   * verification is removed (and reported through `onCorrupt`) instead of being returned.
   */
  async get (key: string, alloc?: (bytes: number) => Buffer): Promise<Buffer | undefined> {
    return (await this.getWithDigest(key, alloc))?.bytes
  }

  /**
   * Like get, with the payload's SHA-256 (already checked against it), so servers need not hash again.
   * `alloc` gives the memory to read the file into (the returned payload is a view of it).
   */
  async getWithDigest (key: string, alloc?: (bytes: number) => Buffer): Promise<{ bytes: Buffer, sha256: Buffer } | undefined> {
    const entry = this.index.get(key)
    if (entry == null) return undefined
    let file: Buffer
    try {
      file = await readChunkFile(this.chunkPath(key), entry.bytes, alloc)
    } catch (err) {
      if (err instanceof ChunkCorruptError || err instanceof FileShrankError) return await this.removeCorrupt(key, err)
      // evicted meanwhile: not a problem; otherwise deleted (or made unreadable) behind our back
      if (this.index.get(key) === entry) {
        this.missingRemoved++
        this.problem(`chunk ${key} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): forgotten`)
        await this.delete(key)
      }
      return undefined
    }
    try {
      const bytes = decodeChunkFile(file)
      this.touch(key)
      return { bytes, sha256: file.subarray(8, 40) }
    } catch (err) {
      return await this.removeCorrupt(key, err as Error)
    }
  }

  private async removeCorrupt (key: string, err: Error): Promise<undefined> {
    this.corruptRemoved++
    this.problem(`removed corrupt chunk ${key}: ${err.message}`)
    await this.delete(key)
    return undefined
  }

  /** Stores a payload atomically. Returns false when it was already present. */
  async put (key: string, payload: Uint8Array): Promise<boolean> {
    if (!isChunkKey(key)) throw new TypeError(`invalid chunk key ${JSON.stringify(key)}`)
    if (payload.length > MAX_CHUNK_BYTES) throw new StoreWriteError(`chunk of ${payload.length} bytes exceeds ${MAX_CHUNK_BYTES}`)
    if (this.index.has(key)) { this.touch(key); return false }
    if (payload.length + CHUNK_FILE_HEADER_BYTES > this.maxBytes) throw new StoreWriteError(`chunk of ${payload.length} bytes exceeds the store's budget of ${this.maxBytes}`)
    const head = chunkFileHeader(payload)
    const tmp = join(this.dir, 'tmp', `${key}.${randomBytes(6).toString('hex')}`)
    const dest = this.chunkPath(key)
    try {
      // both may have been removed behind our back (an operator clearing the cache): recreate them
      await mkdir(join(this.dir, 'chunks', key.slice(0, 2)), { recursive: true })
      await mkdir(join(this.dir, 'tmp'), { recursive: true })
      const fh = await open(tmp, 'w')
      try {
        // header and payload in one call, without concatenating them (megabytes of garbage per prompt)
        await writeAll(fh, [head, payload])
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, dest)
    } catch (err) {
      this.writeErrors++
      await rm(tmp, { force: true }).catch(() => {})
      const code = (err as NodeJS.ErrnoException).code
      const why = code === 'ENOSPC' ? 'the disk is full' : code === 'EDQUOT' ? 'the disk quota is exhausted' : (err as Error).message
      this.problem(`cannot store chunk ${key}: ${why} (nothing was kept; answers are unaffected)`)
      throw new StoreWriteError(`cannot store chunk ${key}: ${why}`)
    }
    if (this.index.has(key)) return false // a concurrent put of the same key won
    const fileBytes = head.length + payload.length
    this.index.set(key, { bytes: fileBytes })
    this.totalBytes += fileBytes
    this.emit('added', key)
    await this.evict()
    return true
  }

  /** Removes a chunk; never throws (what cannot be removed from disk is forgotten and reported). */
  async delete (key: string): Promise<void> {
    try {
      // recursive: a directory where a chunk file should be is damage too
      await rm(this.chunkPath(key), { force: true, recursive: true })
    } catch (err) {
      this.problem(`cannot remove chunk file ${this.chunkPath(key)}: ${(err as Error).message}`)
    }
    this.forget(key)
  }

  private forget (key: string): void {
    const entry = this.index.get(key)
    if (entry == null) return
    this.index.delete(key)
    this.totalBytes -= entry.bytes
    this.emit('removed', key)
  }

  private touch (key: string): void {
    const entry = this.index.get(key)
    if (entry == null) return
    this.index.delete(key)
    this.index.set(key, entry)
    // persist recency for the next open; losing it is harmless
    const now = new Date()
    utimes(this.chunkPath(key), now, now).catch(() => {})
  }

  private async evict (): Promise<void> {
    while (this.totalBytes > this.maxBytes && this.index.size > 0) {
      const oldest = this.index.keys().next().value as string
      this.evictions++
      await this.delete(oldest)
    }
  }

  /** Sum of file sizes on disk (for tests and diagnostics). */
  async diskBytes (): Promise<number> {
    let n = 0
    for (const key of this.index.keys()) n += (await stat(this.chunkPath(key)).catch(() => ({ size: 0 }))).size
    return n
  }
}

/**
 * The whole file, read into `alloc`'s memory. A file of another size than the store wrote was truncated
 * or replaced behind its back: refused (ChunkCorruptError) without reading it.
 */
async function readChunkFile (path: string, writtenBytes: number, alloc?: (bytes: number) => Buffer): Promise<Buffer> {
  return await readWhole(path, alloc, (st) => {
    // something else where the file should be: as good as deleted
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' })
    if (st.size !== writtenBytes) throw new ChunkCorruptError(`chunk file holds ${st.size} bytes, ${writtenBytes} were written`)
  })
}

export function encodeChunkFile (payload: Uint8Array): Buffer {
  return Buffer.concat([chunkFileHeader(payload), payload])
}

/** The header of a payload's chunk file: magic, version, SHA-256 and length. */
function chunkFileHeader (payload: Uint8Array): Buffer {
  const head = Buffer.alloc(CHUNK_FILE_HEADER_BYTES)
  head.writeUInt32LE(CHUNK_FILE_MAGIC, 0)
  head.writeUInt32LE(CHUNK_FILE_VERSION, 4)
  createHash('sha256').update(payload).digest().copy(head, 8)
  head.writeBigUInt64LE(BigInt(payload.length), 40)
  return head
}

export function decodeChunkFile (file: Buffer): Buffer {
  if (file.length < CHUNK_FILE_HEADER_BYTES) throw new ChunkCorruptError('chunk file shorter than its header')
  if (file.readUInt32LE(0) !== CHUNK_FILE_MAGIC) throw new ChunkCorruptError('bad chunk file magic')
  if (file.readUInt32LE(4) !== CHUNK_FILE_VERSION) throw new ChunkCorruptError('unknown chunk file version')
  const len = Number(file.readBigUInt64LE(40))
  if (len + CHUNK_FILE_HEADER_BYTES !== file.length) throw new ChunkCorruptError(`chunk file holds ${file.length - CHUNK_FILE_HEADER_BYTES} bytes, header says ${len}`)
  const payload = file.subarray(CHUNK_FILE_HEADER_BYTES)
  const digest = createHash('sha256').update(payload).digest()
  if (!digest.equals(file.subarray(8, 40))) throw new ChunkCorruptError('chunk content does not match its SHA-256')
  return payload
}
