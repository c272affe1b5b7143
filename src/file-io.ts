/**
 * Whole-file reads and writes with as few system calls as the kernel allows, into memory the caller
 * chooses. `readFile`/`writeFile` go through the thread pool in 512 KiB pieces (30+ round trips for a
 * prefix state) and allocate fresh buffers, whose garbage sets off full collections that cost more than
 * the I/O on a Pi-class CPU. Used for chunk files (src/cache) and state files (src/engine).
 */
import { open } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'

/** The file got shorter while it was being read (truncated or replaced behind our back). */
export class FileShrankError extends Error {
  static override name = 'FileShrankError'
  override name = 'FileShrankError'
}

/**
 * Reads the whole file into `alloc(size)` (memory of at least that size; the result is a view of it).
 * `check` sees the file's stats before anything is read and may refuse by throwing.
 */
export async function readWhole (path: string, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe, check?: (stats: Stats) => void): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const stats = await fh.stat()
    check?.(stats)
    const size = stats.size
    const out = alloc(size).subarray(0, size)
    for (let at = 0; at < size;) {
      const { bytesRead } = await fh.read(out, at, size - at, at)
      if (bytesRead === 0) throw new FileShrankError(`${path} shrank while it was read (${at} of ${size} bytes)`)
      at += bytesRead
    }
    return out
  } finally {
    await fh.close()
  }
}

/** Writes `parts`, back to back, from the start of an open file (one writev, repeated only if the kernel wrote less). */
export async function writeAll (fh: FileHandle, parts: Uint8Array[]): Promise<number> {
  const total = parts.reduce((n, p) => n + p.byteLength, 0)
  for (let at = 0; at < total;) {
    // what is still to write: the parts after `at`, the first one cut
    const rest: Uint8Array[] = []
    let skip = at
    for (const p of parts) {
      if (skip >= p.byteLength) { skip -= p.byteLength; continue }
      rest.push(skip > 0 ? p.subarray(skip) : p)
      skip = 0
    }
    const { bytesWritten } = await fh.writev(rest, at)
    if (bytesWritten === 0) throw new Error('the file system accepted no bytes (is it full?)')
    at += bytesWritten
  }
  return total
}

/** Creates (or truncates) `path` and writes `bytes` to it. */
export async function writeWhole (path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, 'w')
  try {
    await writeAll(fh, [bytes])
  } finally {
    await fh.close()
  }
}
