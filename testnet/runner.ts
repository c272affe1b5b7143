/**
 * A real testnet run: build the LAN (namespaces + bridge, or loopback without root), limit CPU and
 * links, calibrate, then for each strategy start N fresh nodes, replay the workload one query at a
 * time, collect what the nodes measured, and stop them. Everything created is removed at the end,
 * whatever happens (see cleanup.ts).
 */
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_BLOCK_TOKENS } from '../src/cache/constants.js'
import { calibrate } from './calibrate.js'
import { cgroupSupport, createCpuLimiter } from './cgroups.js'
import { Cleanup } from './cleanup.js'
import { BUSY_NODES, CPU_BUDGET_FRACTION, DEFAULT_SETTLE_MS, DEFAULT_THREADS, MESH_TIMEOUT_MS, POLL_MS, QUERY_TIMEOUT_MS } from './constants.js'
import { TestnetNodeError, TestnetSetupError } from './errors.js'
import { metricSum } from './http.js'
import { createMeshNetwork, netnsUnavailable } from './network.js'
import { startTestnetNode } from './nodes.js'
import { machineInfo, writeReport } from './report.js'
import { addTotals, round, summarize } from './summary.js'
import type { Calibration } from './calibrate.js'
import type { CpuLimiter } from './cgroups.js'
import type { Strategy } from './constants.js'
import type { MeshNetwork } from './network.js'
import type { NodeHost, TestnetNode } from './nodes.js'
import type { Profile } from './profiles.js'
import type { RunHeader, RunMode, TestnetReport } from './report.js'
import type { MeshTotals, QueryRecord } from './summary.js'
import type { Workload, WorkloadQuery } from './workload.js'

export type TestnetEvent =
  | { type: 'phase', text: string }
  | { type: 'warn', text: string }
  | { type: 'query', strategy: Strategy, done: number, total: number, record: QueryRecord }

/**
 * The order strategies run in: pass p runs them as listed when p is even, reversed when odd, so with
 * two passes each strategy runs once early and once late and a machine that drifts (another tenant,
 * the page cache) favours none of them (an ABBA design).
 */
export function passOrder (strategies: Strategy[], passes: number): Array<{ pass: number, strategy: Strategy }> {
  const out: Array<{ pass: number, strategy: Strategy }> = []
  for (let pass = 0; pass < passes; pass++) {
    for (const strategy of pass % 2 === 0 ? strategies : [...strategies].reverse()) out.push({ pass, strategy })
  }
  return out
}

/** "local, catalog, then catalog, local": the order of the first two passes (the rest repeat them). */
function passOrderText (strategies: Strategy[], passes: number): string {
  const first = passOrder(strategies, Math.min(passes, 2))
  const text = [0, 1].filter(p => p < passes).map(p => first.filter(x => x.pass === p).map(x => x.strategy).join(', ')).join(', then ')
  return passes > 2 ? `${text}, and so on` : text
}

/** The most CPU one node's quota may have: the machine's budget shared by the nodes that can be busy at once. */
function quotaBudget (nodes: number): number {
  return (availableParallelism() * CPU_BUDGET_FRACTION) / Math.min(Math.max(1, nodes), BUSY_NODES)
}

export interface TestnetInit {
  nodes: number
  profile: Profile
  workload: Workload
  strategies: Strategy[]
  /** run every strategy this many times, in alternating order (see passOrder; default 1) */
  passes?: number
  model: { path: string, label: string }
  maxTokens: number
  /** report directory (node logs go to <out>/logs) */
  out: string
  /** auto: namespaces where they can be made, else loopback */
  mode?: 'auto' | 'netns' | 'loopback'
  /** evaluation threads per node (default: the profile's, else DEFAULT_THREADS) */
  threads?: number
  /** tokens per cached block on every node @default DEFAULT_BLOCK_TOKENS */
  blockTokens?: number
  /** false: nodes always fetch what peers hold, even when computing looks faster @default true */
  adaptiveFetch?: boolean
  /** catalog: wait at most this long after each query for its catalog to reach every peer */
  settleMs?: number
  signal: AbortSignal
  onEvent?: (event: TestnetEvent) => void
}

export interface TestnetResult {
  report: TestnetReport
  files: string[]
}

const sleep = async (ms: number, signal: AbortSignal): Promise<void> => {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** A signal that ends with the run or after `ms`. */
const within = (signal: AbortSignal, ms: number): AbortSignal => AbortSignal.any([signal, AbortSignal.timeout(ms)])

/** Polls until `check` holds; returns the time it took, or undefined after `ms`. */
async function waitFor (check: () => Promise<boolean>, ms: number, signal: AbortSignal): Promise<number | undefined> {
  const start = performance.now()
  for (;;) {
    if (await check().catch(() => false)) return performance.now() - start
    if (performance.now() - start > ms) return undefined
    await sleep(POLL_MS, signal)
  }
}

function modeLabel (mode: RunMode, nodes: number, why?: string): string {
  return mode === 'netns'
    ? `${nodes} real nodes, each in its own network namespace on a Linux bridge, discovering each other by mDNS over TCP`
    : `LOOPBACK FALLBACK: ${nodes} real nodes on 127.0.0.1 with static peers (--no-mdns --peer), no link limits${why != null ? ` (${why})` : ''}`
}

async function meshTotals (nodes: TestnetNode[], signal: AbortSignal): Promise<MeshTotals> {
  const texts = await Promise.all(nodes.map(async n => await n.metrics(within(signal, 30_000)).catch(() => '')))
  const sum = (name: string): number => texts.reduce((a, t) => a + (Number.isNaN(metricSum(t, name)) ? 0 : metricSum(t, name)), 0)
  return {
    fetchRequests: sum('promptmesh_fetch_requests_total'),
    fetchRequestsWasted: sum('promptmesh_fetch_requests_wasted_total'),
    kvRequestsServed: sum('promptmesh_kv_requests_served_total'),
    kvBytesServed: sum('promptmesh_kv_bytes_served_total'),
    kvWireBytesServed: sum('promptmesh_kv_wire_bytes_served_total'),
    catalogPublished: sum('promptmesh_catalog_published_total'),
    catalogReceived: sum('promptmesh_catalog_received_total'),
    catalogFalsePositives: sum('promptmesh_catalog_false_positives_total')
  }
}

interface Setup {
  mode: RunMode
  fallbackWhy?: string
  network?: MeshNetwork
  limiter?: CpuLimiter
  cpuUnavailable?: string
  host: NodeHost
  workDir: string
}

/** The LAN (namespaces, or loopback) and the CPU limiter, for `nodes` slots; all registered in `cleanup`. */
async function prepare (runId: string, nodes: number, profile: Profile, wanted: TestnetInit['mode'], out: string, cleanup: Cleanup, emit: (e: TestnetEvent) => void): Promise<Setup> {
  let mode: RunMode = 'loopback'
  let fallbackWhy: string | undefined
  if (wanted !== 'loopback') {
    const why = await netnsUnavailable(runId)
    if (why == null) {
      mode = 'netns'
    } else if (wanted === 'netns') {
      throw new TestnetSetupError(`--mode netns: ${why}`)
    } else {
      fallbackWhy = why
      emit({ type: 'warn', text: `no network namespaces (${why}): running the loopback fallback, without mDNS and link limits` })
    }
  } else {
    fallbackWhy = 'asked for with --mode loopback'
  }
  const workDir = await mkdtemp(join(tmpdir(), `pmtn-${runId}-`))
  cleanup.add(`work directory ${workDir}`, async () => { await rm(workDir, { recursive: true, force: true }) }, () => { rmSync(workDir, { recursive: true, force: true }) })
  const logDir = join(out, 'logs')
  await mkdir(logDir, { recursive: true })
  let network: MeshNetwork | undefined
  if (mode === 'netns') {
    emit({ type: 'phase', text: `creating ${nodes} network namespace(s) on bridge pmbr-${runId}` })
    network = await createMeshNetwork(runId, nodes, cleanup)
  }
  let limiter: CpuLimiter | undefined
  let cpuUnavailable: string | undefined
  if (profile.prefillTokPerS != null) {
    const support = cgroupSupport()
    if ('unavailable' in support) {
      cpuUnavailable = support.unavailable
    } else {
      try {
        limiter = await createCpuLimiter(runId, nodes, cleanup)
      } catch (err) {
        cpuUnavailable = (err as Error).message
      }
    }
    if (cpuUnavailable != null) emit({ type: 'warn', text: `no CPU limit (${cpuUnavailable}): nodes run at this machine's full speed` })
  }
  return { mode, fallbackWhy, network, limiter, cpuUnavailable, host: { mode: mode as 'netns' | 'loopback', network, workDir, logDir }, workDir }
}

/** A throw-away node in slot 0 that measures the model and, under a CPU-limited profile, finds the quota. */
async function calibrationStep (setup: Setup, o: { runId: string, nodes: number, profile: Profile, model: string, threads: number, blockTokens?: number, signal: AbortSignal }, cleanup: Cleanup, emit: (e: TestnetEvent) => void): Promise<Calibration> {
  emit({ type: 'phase', text: 'calibrating' })
  const dataDir = join(setup.workDir, 'calibration')
  const node = await startTestnetNode(setup.host, { index: 0, label: 'calibration', model: o.model, dataDir, strategy: 'local', threads: o.threads, blockTokens: o.blockTokens }, cleanup, o.signal)
  try {
    return await calibrate({
      node,
      slot: 0,
      limiter: setup.limiter,
      limiterUnavailable: setup.cpuUnavailable ?? (o.profile.prefillTokPerS == null ? 'the profile sets no CPU limit' : undefined),
      targetPrefillTokPerS: o.profile.prefillTokPerS,
      assumedDecodeTokPerS: o.profile.assumedDecodeTokPerS,
      maxQuotaCores: quotaBudget(o.nodes),
      threads: o.threads,
      blockTokens: o.blockTokens ?? DEFAULT_BLOCK_TOKENS,
      runId: o.runId,
      signal: o.signal,
      onStep: text => emit({ type: 'phase', text: `calibration: ${text}` })
    })
  } finally {
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

export interface CalibrationInit {
  profile: Profile
  model: { path: string, label: string }
  out: string
  mode?: TestnetInit['mode']
  threads?: number
  blockTokens?: number
  /** the quota budget is shared by this many nodes @default 1 */
  nodes?: number
  signal: AbortSignal
  onEvent?: (event: TestnetEvent) => void
}

/** Calibration alone (for --simulate without a previous report): one real node, then everything removed. */
export async function calibrateModel (init: CalibrationInit): Promise<{ calibration: Calibration, mode: RunMode, modeLabel: string }> {
  const emit = init.onEvent ?? (() => {})
  const runId = randomBytes(3).toString('hex')
  const cleanup = new Cleanup()
  const threads = init.threads ?? init.profile.threads ?? DEFAULT_THREADS
  try {
    const setup = await prepare(runId, 1, init.profile, init.mode, init.out, cleanup, emit)
    const calibration = await calibrationStep(setup, { runId, nodes: init.nodes ?? 1, profile: init.profile, model: init.model.path, threads, blockTokens: init.blockTokens, signal: init.signal }, cleanup, emit)
    return { calibration, mode: setup.mode, modeLabel: modeLabel(setup.mode, 1, setup.fallbackWhy) }
  } finally {
    const failures = await cleanup.run()
    if (failures.length > 0) emit({ type: 'warn', text: `cleanup failed for: ${failures.join('; ')}` })
  }
}

interface StrategyContext {
  init: TestnetInit
  runId: string
  host: NodeHost
  workDir: string
  limiter?: CpuLimiter
  quotaCores?: number
  threads: number
  cleanup: Cleanup
  emit: (e: TestnetEvent) => void
  /** every query of the run so far; this strategy's are appended */
  records: QueryRecord[]
  /** whether answers carry per-query request counts (else /metrics deltas are used); learned from the first answer */
  counters: { fromAnswers?: boolean }
}

/** N fresh nodes on empty caches: start, warm up, mesh, throttle, replay the workload, count, stop. */
async function runStrategy (ctx: StrategyContext, strategy: Strategy, pass: number): Promise<MeshTotals> {
  const { init, host, emit } = ctx
  const { signal, workload } = init
  const passes = init.passes ?? 1
  signal.throwIfAborted()
  emit({ type: 'phase', text: `${strategy}${passes > 1 ? ` (pass ${pass + 1} of ${passes})` : ''}: starting ${init.nodes} nodes with empty caches` })
  const nodes: TestnetNode[] = []
  const dataRoot = join(ctx.workDir, strategy)
  const start = async (i: number): Promise<TestnetNode> => await startTestnetNode(host, {
    index: i, label: `${strategy}-n${i}`, model: init.model.path, dataDir: join(dataRoot, `n${i}`), strategy, threads: ctx.threads, blockTokens: init.blockTokens, adaptiveFetch: init.adaptiveFetch, peers: nodes.map(n => n.address)
  }, ctx.cleanup, signal)
  try {
    if (host.mode === 'netns') {
      nodes.push(...await Promise.all(Array.from({ length: init.nodes }, async (_, i) => await start(i))))
    } else {
      // static peers: each node dials every node started before it, which makes a full mesh
      for (let i = 0; i < init.nodes; i++) nodes.push(await start(i))
    }
    // warm up unthrottled (a prompt shorter than a block: nothing is cached)
    for (const n of nodes) await n.complete('Warm-up.', 2, within(signal, QUERY_TIMEOUT_MS))

    const needsPeers = strategy === 'broadcast' || strategy === 'catalog'
    emit({ type: 'phase', text: `${strategy}: waiting for the mesh${host.mode === 'netns' ? ' (mDNS)' : ''}` })
    const meshMs = await waitFor(async () => {
      const all = await Promise.all(nodes.map(async n => await n.status(within(signal, 10_000))))
      return all.every(s => s.peers.filter(p => p.connected).length >= init.nodes - 1 &&
        (strategy !== 'catalog' || s.peers.filter(p => p.catalog != null).length >= init.nodes - 1))
    }, needsPeers ? MESH_TIMEOUT_MS : 10_000, signal)
    if (meshMs == null) {
      const msg = `${strategy}: the nodes did not all see each other${strategy === 'catalog' ? ' (and each other\'s catalogs)' : ''} within ${needsPeers ? MESH_TIMEOUT_MS / 1000 : 10} s`
      if (needsPeers) throw new TestnetNodeError(msg)
      emit({ type: 'warn', text: `${msg} (not needed by ${strategy})` })
    }

    if (ctx.limiter != null && ctx.quotaCores != null) for (const n of nodes) await ctx.limiter.add(n.index, n.pid)
    // a node that has been running knows its own prefill speed (adaptive fetching needs it): one
    // private prompt per node, throttled, that shares no block with the workload or another node
    emit({ type: 'phase', text: `${strategy}: one private prompt per node, so each has measured its prefill speed` })
    for (const n of nodes) await n.complete(privatePrompt(ctx.runId, strategy, n.index), 1, within(signal, QUERY_TIMEOUT_MS))

    let done = 0
    for (const q of workload.queries) {
      signal.throwIfAborted()
      const record = await runQuery(ctx, strategy, nodes, q)
      if (passes > 1) record.pass = pass
      ctx.records.push(record)
      emit({ type: 'query', strategy, done: ++done, total: workload.queries.length, record })
    }
    return await meshTotals(nodes, signal)
  } finally {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await rm(dataRoot, { recursive: true, force: true })
  }
}

/** One query on its node, as the node measured it; under catalog, then waits for the new catalog to spread. */
async function runQuery (ctx: StrategyContext, strategy: Strategy, nodes: TestnetNode[], q: WorkloadQuery): Promise<QueryRecord> {
  const { signal } = ctx.init
  const node = nodes[q.node] as TestnetNode
  const before = ctx.counters.fromAnswers !== true ? await node.metrics(within(signal, 60_000)) : undefined
  const record: QueryRecord = {
    strategy, index: q.index, node: q.node, ...(q.subject != null ? { subject: q.subject } : {}), ...(q.round > 0 ? { round: q.round } : {}),
    promptTokens: 0, ttftMs: NaN, ttltMs: NaN, reusedTokens: 0, localTokens: 0, remoteTokens: 0, source: 'error',
    bytesFetched: 0, peers: 0, requests: 0, emptyRequests: 0, requestsFrom: 'answer', tokens: [], timings: {}
  }
  try {
    const c = await node.complete(q.prompt, ctx.init.maxTokens, within(signal, QUERY_TIMEOUT_MS))
    Object.assign(record, {
      promptTokens: c.promptTokens, ttftMs: c.ttftMs, ttltMs: c.ttltMs, reusedTokens: c.reusedTokens, localTokens: c.localTokens,
      remoteTokens: c.remoteTokens, source: c.source, bytesFetched: c.bytesFetched, peers: c.peers.length, tokens: c.tokens,
      timings: { ...c.timings, wallMs: round(c.wallMs) }, ...(c.fetchSkipped != null ? { fetchSkipped: c.fetchSkipped } : {})
    })
    ctx.counters.fromAnswers ??= c.requests != null
    if (c.requests != null) {
      record.requests = c.requests
      record.emptyRequests = c.emptyRequests ?? 0
    } else if (before != null) {
      // serial queries: the querying node's counters moved only for this one
      const after = await node.metrics(within(signal, 60_000))
      const delta = (name: string): number => (metricSum(after, name) || 0) - (metricSum(before, name) || 0)
      record.requests = delta('promptmesh_fetch_requests_total')
      record.emptyRequests = delta('promptmesh_fetch_requests_wasted_total')
      record.requestsFrom = 'metrics'
    }
  } catch (err) {
    if (signal.aborted) throw err
    record.error = (err as Error).message
    ctx.emit({ type: 'warn', text: `${strategy} query ${q.index} on node ${q.node} failed: ${record.error}` })
    if (!node.running) throw new TestnetNodeError(`${node.label} died: ${record.error}`)
    return record
  }
  if (strategy === 'catalog') {
    // the next query should see this one's chunks: wait until every peer holds the querying node's new catalog
    const own = (await node.status(within(signal, 30_000))).cache.chunks
    const others = nodes.filter(n => n !== node)
    const waited = await waitFor(async () => {
      const all = await Promise.all(others.map(async n => await n.status(within(signal, 10_000))))
      return all.every(s => (s.peers.find(p => p.peerId === node.peerId)?.catalog?.entries ?? -1) >= own)
    }, ctx.init.settleMs ?? DEFAULT_SETTLE_MS, signal)
    record.settleMs = waited == null ? null : round(waited)
  }
  return record
}

const PRIVATE_TEXT = 'Before the questions begin, this board reads a short note of its own about the weather, the garden, ' +
  'the bus timetable and the shopping list, so that it knows how fast it reads. '

/** About 130 tokens no other prompt starts with. */
function privatePrompt (runId: string, strategy: string, index: number): string {
  return `Private note ${runId} ${strategy} ${index}. ${PRIVATE_TEXT.repeat(2)}`
}

export async function runTestnet (init: TestnetInit): Promise<TestnetResult> {
  const { signal, profile, workload, strategies } = init
  const emit = init.onEvent ?? (() => {})
  const runId = randomBytes(3).toString('hex')
  const started = new Date()
  const cleanup = new Cleanup()
  const machine = machineInfo()
  const records: QueryRecord[] = []
  const mesh: Partial<Record<Strategy, MeshTotals>> = {}
  const notes: string[] = []
  let mode: RunMode = 'loopback'
  let fallbackWhy: string | undefined
  let calibration: Calibration | undefined
  let limiter: CpuLimiter | undefined
  let cpuUnavailable: string | undefined
  let network: MeshNetwork | undefined
  let qdiscs: string[] | undefined
  let incomplete: string | undefined
  let failure: unknown
  const threads = init.threads ?? profile.threads ?? DEFAULT_THREADS
  const passes = init.passes ?? 1

  emit({ type: 'phase', text: `testnet ${runId}: ${init.nodes} nodes, profile ${profile.name}, ${workload.queries.length} queries × ${strategies.length} strategies` })
  try {
    const setup = await prepare(runId, init.nodes, profile, init.mode, init.out, cleanup, emit)
    mode = setup.mode
    fallbackWhy = setup.fallbackWhy
    network = setup.network
    limiter = setup.limiter
    cpuUnavailable = setup.cpuUnavailable
    const host = setup.host
    const workDir = setup.workDir
    const maxQuotaCores = quotaBudget(init.nodes)
    calibration = await calibrationStep(setup, { runId, nodes: init.nodes, profile, model: init.model.path, threads, blockTokens: init.blockTokens, signal }, cleanup, emit)
    if (limiter != null && calibration.quotaCores != null) {
      for (let i = 0; i < init.nodes; i++) await limiter.setQuota(i, calibration.quotaCores)
      if (calibration.quotaCapped === true) {
        emit({ type: 'warn', text: `the CPU quota is capped at ${maxQuotaCores.toFixed(2)} cores per node (${Math.min(init.nodes, BUSY_NODES)} busy nodes must fit ${availableParallelism()} cores): prefill runs at ${calibration.throttled?.prefillTokPerS} tok/s, not ${profile.prefillTokPerS}` })
      }
    }

    // ---------------------------------------------------------------- links
    if (profile.linkMbit != null) {
      if (network != null) {
        await network.limitLinks(profile.linkMbit)
        qdiscs = await network.describeLinks()
      } else {
        emit({ type: 'warn', text: `link limit of ${profile.linkMbit} Mbit/s NOT applied: the loopback fallback shares the machine's loopback` })
      }
    }

    // ---------------------------------------------------------------- strategies
    const ctx: StrategyContext = { init, runId, host, workDir, limiter, quotaCores: calibration.quotaCores, threads, cleanup, emit, records, counters: {} }
    for (const { pass, strategy } of passOrder(strategies, passes)) mesh[strategy] = addTotals(mesh[strategy], await runStrategy(ctx, strategy, pass))
  } catch (err) {
    failure = err
    incomplete = signal.aborted ? `interrupted (${(signal.reason as Error)?.message ?? 'aborted'})` : `failed: ${(err as Error).message}`
  } finally {
    emit({ type: 'phase', text: 'removing namespaces, cgroups and processes' })
  }
  const failures = await cleanup.run()
  if (failures.length > 0) emit({ type: 'warn', text: `cleanup failed for: ${failures.join('; ')}` })

  if (mode === 'netns' && calibration != null) notes.push('Node HTTP APIs listen on 127.0.0.1 inside each namespace and are reached through a unix-socket relay; the testnet never joins the nodes\' network.')
  if (records.some(r => r.requestsFrom === 'metrics')) notes.push('Requests per query were read from the querying node\'s /metrics counters (its answers do not carry them).')
  notes.push('Before the workload, each node answers one private prompt (about 4 blocks, shared with nothing) under its CPU limit, so that it has measured its own prefill speed as a node that has been running would have; those queries are not in the results.')
  if (init.adaptiveFetch === false) notes.push('Adaptive fetching was OFF (--no-adaptive-fetch): nodes fetched whatever peers held, however slow.')
  if (strategies.includes('catalog')) notes.push(`Under catalog, the testnet waits after each query (at most ${((init.settleMs ?? DEFAULT_SETTLE_MS) / 1000).toFixed(0)} s) until the querying node's updated catalog has reached every peer, as it would between a Pi's slow queries; the wait is not part of any TTFT.`)
  const finished = new Date()
  const header: RunHeader = {
    profile,
    mode,
    modeLabel: modeLabel(mode, init.nodes, fallbackWhy),
    nodes: init.nodes,
    model: { label: init.model.label, path: init.model.path },
    strategies,
    workload: { kind: workload.kind, source: workload.source, queries: workload.queries.length, subjects: workload.subjects, skippedSubjects: workload.skippedSubjects, rounds: workload.rounds },
    maxTokens: init.maxTokens,
    threads,
    adaptiveFetch: init.adaptiveFetch !== false,
    ...(calibration != null ? { calibration } : {}),
    limits: {
      cpu: limiter != null && calibration?.quotaCores != null
        ? `${limiter.kind} quota of ${calibration.quotaCores.toFixed(3)} cores per node (period ${limiter.periodUs / 1000} ms), calibrated to ${profile.prefillTokPerS ?? '?'} prompt tok/s`
        : profile.prefillTokPerS != null ? `NOT LIMITED (${cpuUnavailable ?? 'calibration did not finish'}): full speed` : 'no limit (profile)',
      ...(limiter != null ? { cgroup: limiter.dir } : {}),
      ...(calibration?.quotaCores != null && limiter != null ? { cpuQuotaCores: calibration.quotaCores } : {}),
      link: profile.linkMbit != null
        ? network != null ? `tbf ${profile.linkMbit} Mbit/s each way per node (burst 32 KB), no added delay` : `NOT LIMITED (loopback fallback): ${profile.linkMbit} Mbit/s asked`
        : 'no limit (profile)',
      ...(profile.linkMbit != null && network != null ? { linkMbit: profile.linkMbit } : {}),
      ...(qdiscs != null ? { qdiscs } : {})
    },
    machine: { ...machine },
    ...(passes > 1 ? { passes } : {}),
    concurrency: `one at a time, in workload order, each strategy on ${init.nodes} fresh nodes with empty caches${passes > 1 ? `, in ${passes} passes: ${passOrderText(strategies, passes)} (each strategy early and late: machine drift favours none)` : ''} (load average ${loadavg().map(v => v.toFixed(2)).join(' ')} at the end)`,
    notes,
    cleanup: { ok: failures.length === 0, failures }
  }
  const report: TestnetReport = {
    kind: 'promptmesh-testnet',
    version: 1,
    runId,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationS: round((finished.getTime() - started.getTime()) / 1000, 1),
    ...(incomplete != null ? { incomplete } : {}),
    header,
    queries: records,
    summary: summarize(records, strategies.filter(s => records.some(r => r.strategy === s)), mesh)
  }
  const files = records.length > 0 || calibration != null ? await writeReport(init.out, report) : []
  if (failure != null) throw Object.assign(failure as Error, { report, files })
  return { report, files }
}
