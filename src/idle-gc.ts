import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** How long the process must have had nothing to do before it collects. */
export const DEFAULT_QUIET_MS = 150

export interface IdleCollectorInit {
  quietMs?: number
  /** the collection to run; default: V8's full GC (exposed at first use), or none if it cannot be */
  collect?: () => void
}

/**
 * Collects garbage while the node has nothing to do. V8 runs a full collection when allocation crosses
 * its limits, which on a node means in the middle of a query or a transfer (a fetch allocates megabytes
 * of chunk buffers, a restore tens): measured on the pi-zero-2w testnet, GC pauses took 141 ms of a
 * repeat's ~1.1 s TTFT on average (up to 280 ms). Collecting once the node has been quiet for a moment moves that work
 * to where nobody waits for it, and leaves the next query a heap far from those limits.
 *
 * Work is marked with `busy()`; a collection runs `quietMs` after the last piece of work ended, never
 * while some is running, and only if some ran since the last collection.
 */
export class IdleCollector {
  private readonly quietMs: number
  private collect?: () => void
  private active = 0
  private dirty = false
  private timer?: NodeJS.Timeout
  /** collections run so far */
  collections = 0

  constructor (init: IdleCollectorInit = {}) {
    this.quietMs = init.quietMs ?? DEFAULT_QUIET_MS
    this.collect = init.collect
  }

  /** Marks work in progress; call the function returned when it is done (once). */
  busy (): () => void {
    this.active++
    this.dirty = true
    if (this.timer != null) { clearTimeout(this.timer); this.timer = undefined }
    let done = false
    return () => {
      if (done) return
      done = true
      this.active--
      if (this.active === 0) this.schedule()
    }
  }

  private schedule (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.timer = undefined; this.run() }, this.quietMs)
    // never what keeps a process alive
    this.timer.unref()
  }

  private run (): void {
    if (this.active > 0 || !this.dirty) return
    this.dirty = false
    this.collect ??= fullGc()
    this.collect()
    this.collections++
  }
}

/** V8's full collection: `gc` of a context made after --expose-gc is set (as jest's leak detector does). */
function fullGc (): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  try {
    setFlagsFromString('--expose-gc')
    const gc: unknown = runInNewContext('gc')
    if (typeof gc === 'function') return gc as () => void
  } catch {}
  return () => {}
}

/** The process's collector: queries and chunk transfers mark themselves busy on it. */
export const idleCollector = new IdleCollector()
