/**
 * Per-node CPU limits with cgroup CPU quotas: a group `pmtn-<id>` with one child per node. cgroup v1
 * (`/sys/fs/cgroup/cpu/…/cpu.cfs_quota_us` + `cpu.cfs_period_us`) where the cpu controller is mounted
 * there, else cgroup v2 (`cpu.max`, with `+cpu` enabled down the tree). Node processes are moved in by
 * pid after they started (loading a model under a Pi-class quota would take minutes) and the groups
 * are removed at the end, once their processes have exited (or been moved back out).
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CPU_PERIOD_US, MIN_QUOTA_US } from './constants.js'
import { TestnetSetupError } from './errors.js'
import type { Cleanup } from './cleanup.js'

const V1_ROOT = '/sys/fs/cgroup/cpu'
const V2_ROOT = '/sys/fs/cgroup'

export interface CpuLimiter {
  readonly kind: 'cgroup-v1' | 'cgroup-v2'
  /** the group's directory */
  readonly dir: string
  readonly periodUs: number
  /** sets node i's quota in cores (e.g. 0.05 = 5 % of one core); undefined removes the limit */
  setQuota: (index: number, cores: number | undefined) => Promise<void>
  /** moves a process (all its threads) into node i's group */
  add: (index: number, pid: number) => Promise<void>
  /** the quota in force, in cores (undefined: none) */
  quota: (index: number) => number | undefined
  /** throttling counters of node i's group (how often the quota bit) */
  stat: (index: number) => Promise<{ periods: number, throttled: number, throttledMs: number }>
}

/** Which cgroup layout can hold CPU quotas here, or why none can. */
export function cgroupSupport (): { kind: 'cgroup-v1' | 'cgroup-v2' } | { unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: `cgroups need Linux (this is ${process.platform})` }
  if (process.getuid?.() !== 0) return { unavailable: 'CPU quotas (cgroups) need root' }
  if (existsSync(join(V1_ROOT, 'cpu.cfs_quota_us'))) return { kind: 'cgroup-v1' }
  try {
    if (readFileSync(join(V2_ROOT, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu')) return { kind: 'cgroup-v2' }
  } catch {}
  return { unavailable: 'no cgroup cpu controller (neither v1 at /sys/fs/cgroup/cpu nor v2 with "cpu" in cgroup.controllers)' }
}

/** Moves whatever is left in `dir` to `parent` and removes `dir`. */
async function removeGroup (dir: string, parent: string): Promise<void> {
  if (!existsSync(dir)) return
  try {
    const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split(/\s+/).filter(Boolean)
    for (const pid of pids) await writeFile(join(parent, 'cgroup.procs'), pid).catch(() => {})
  } catch {}
  // the kernel may take a moment to notice that exited processes left
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      if (attempt >= 20) throw err
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

function removeGroupSync (dir: string, parent: string): void {
  try {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean)) {
      try { writeFileSync(join(parent, 'cgroup.procs'), pid) } catch {}
    }
  } catch {}
  try { rmdirSync(dir) } catch {}
}

export async function createCpuLimiter (runId: string, nodes: number, cleanup: Cleanup): Promise<CpuLimiter> {
  const support = cgroupSupport()
  if ('unavailable' in support) throw new TestnetSetupError(support.unavailable)
  const kind = support.kind
  const root = kind === 'cgroup-v1' ? V1_ROOT : V2_ROOT
  const dir = join(root, `pmtn-${runId}`)
  await mkdir(dir)
  cleanup.add(`cgroup ${dir}`, async () => { await removeGroup(dir, root) }, () => { removeGroupSync(dir, root) })
  if (kind === 'cgroup-v2') {
    // processes may only live in leaves; the cpu controller must be enabled from the root down
    await writeFile(join(root, 'cgroup.subtree_control'), '+cpu').catch(() => {})
    await writeFile(join(dir, 'cgroup.subtree_control'), '+cpu')
  }
  const children: string[] = []
  const quotas: Array<number | undefined> = []
  for (let i = 0; i < nodes; i++) {
    const child = join(dir, `n${i}`)
    await mkdir(child)
    cleanup.add(`cgroup ${child}`, async () => { await removeGroup(child, root) }, () => { removeGroupSync(child, root) })
    if (kind === 'cgroup-v1') await writeFile(join(child, 'cpu.cfs_period_us'), String(CPU_PERIOD_US))
    children.push(child)
    quotas.push(undefined)
  }
  const childDir = (i: number): string => {
    const c = children[i]
    if (c == null) throw new RangeError(`no cgroup for node ${i}`)
    return c
  }

  return {
    kind,
    dir,
    periodUs: CPU_PERIOD_US,
    setQuota: async (i, cores) => {
      const us = cores == null ? undefined : Math.max(MIN_QUOTA_US, Math.round(cores * CPU_PERIOD_US))
      if (kind === 'cgroup-v1') {
        await writeFile(join(childDir(i), 'cpu.cfs_quota_us'), String(us ?? -1))
      } else {
        await writeFile(join(childDir(i), 'cpu.max'), `${us ?? 'max'} ${CPU_PERIOD_US}`)
      }
      quotas[i] = us == null ? undefined : us / CPU_PERIOD_US
    },
    add: async (i, pid) => {
      await writeFile(join(childDir(i), 'cgroup.procs'), String(pid))
    },
    quota: i => quotas[i],
    stat: async (i) => {
      const text = await readFile(join(childDir(i), 'cpu.stat'), 'utf8').catch(() => '')
      const field = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
      return kind === 'cgroup-v1'
        ? { periods: field('nr_periods'), throttled: field('nr_throttled'), throttledMs: field('throttled_time') / 1e6 }
        : { periods: field('nr_periods'), throttled: field('nr_throttled'), throttledMs: field('throttled_usec') / 1e3 }
    }
  }
}
