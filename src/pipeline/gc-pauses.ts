import { constants, PerformanceObserver } from 'node:perf_hooks'
import type { PerformanceEntry } from 'node:perf_hooks'

/** How long GC pauses are remembered: longer than any query's time to first token. */
const KEEP_MS = 10 * 60_000

interface Pause { start: number, end: number, major: boolean }

/**
 * The GC pauses of this process, as V8 reports them, so a query can say how much of its time went to
 * collecting garbage (under a CPU quota a full collection of a node's heap takes a few hundred ms).
 * One observer per process, shared by every pipeline.
 */
class GcPauses {
  private pauses: Pause[] = []
  private observer?: PerformanceObserver

  /** starts observing (idempotent) */
  watch (): void {
    if (this.observer != null) return
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) this.add(entry)
    })
    this.observer.observe({ entryTypes: ['gc'] })
  }

  private add (entry: PerformanceEntry): void {
    const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind
    this.pauses.push({ start: entry.startTime, end: entry.startTime + entry.duration, major: kind === constants.NODE_PERFORMANCE_GC_MAJOR })
    const old = entry.startTime - KEEP_MS
    if ((this.pauses[0]?.end ?? Infinity) < old) this.pauses = this.pauses.filter(p => p.end >= old)
  }

  /**
   * ms of GC pause within [from, to] (performance.now() times), all kinds and full collections only.
   * V8 reports a pause after it ends, so one in the last moments before `to` may not be counted yet.
   */
  within (from: number, to: number): { ms: number, majorMs: number } {
    let ms = 0
    let majorMs = 0
    for (const p of this.pauses) {
      const overlap = Math.min(p.end, to) - Math.max(p.start, from)
      if (overlap <= 0) continue
      ms += overlap
      if (p.major) majorMs += overlap
    }
    return { ms, majorMs }
  }
}

export const gcPauses = new GcPauses()
