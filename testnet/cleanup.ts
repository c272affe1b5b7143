/**
 * Everything the testnet creates (processes, namespaces, cgroups, temp dirs) is registered here the
 * moment it exists, and removed in reverse order: by `run()` on the normal path and on failure or
 * Ctrl-C, and by `runSync()` from a process 'exit' hook as a last resort (exit handlers cannot wait).
 * Each entry names one resource by its id; nothing is ever removed by pattern.
 */

interface Entry {
  what: string
  remove: () => Promise<void>
  /** synchronous variant for the exit hook */
  removeSync?: () => void
}

const live = new Set<Cleanup>()
let hookInstalled = false

function installExitHook (): void {
  if (hookInstalled) return
  hookInstalled = true
  process.on('exit', () => {
    for (const c of [...live]) c.runSync()
  })
}

export class Cleanup {
  private readonly entries: Entry[] = []
  private running?: Promise<string[]>

  constructor () {
    installExitHook()
    live.add(this)
  }

  /** Registers a resource; returns a function that removes it now (and unregisters it). */
  add (what: string, remove: () => Promise<void>, removeSync?: () => void): () => Promise<void> {
    const entry: Entry = { what, remove, removeSync }
    this.entries.push(entry)
    return async () => {
      const i = this.entries.indexOf(entry)
      if (i < 0) return
      this.entries.splice(i, 1)
      await entry.remove()
    }
  }

  get pending (): string[] {
    return this.entries.map(e => e.what)
  }

  /** Removes everything, newest first; returns the failures (and keeps going past them). */
  async run (): Promise<string[]> {
    this.running ??= (async () => {
      const failures: string[] = []
      while (this.entries.length > 0) {
        const entry = this.entries.pop() as Entry
        try {
          await entry.remove()
        } catch (err) {
          failures.push(`${entry.what}: ${(err as Error).message}`)
          try { entry.removeSync?.() } catch {}
        }
      }
      live.delete(this)
      return failures
    })()
    const failures = await this.running
    this.running = undefined
    return failures
  }

  /** Last resort from an exit hook or a second Ctrl-C. */
  runSync (): void {
    while (this.entries.length > 0) {
      const entry = this.entries.pop() as Entry
      try { entry.removeSync?.() } catch {}
    }
    live.delete(this)
  }
}
