/**
 * --simulate: runs the discrete-event model (simulate.ts) for one or more mesh sizes with timings
 * from a calibration on the real model (measured now, or read from a previous report.json), and
 * writes the same report files as a real run, labelled as a simulation in each.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { SIM_QUERY_GAP_MS } from './constants.js'
import { TestnetSetupError } from './errors.js'
import { machineInfo, writeReport } from './report.js'
import { simulate } from './simulate.js'
import { round } from './summary.js'
import type { Calibration } from './calibrate.js'
import type { Strategy } from './constants.js'
import type { Profile } from './profiles.js'
import type { RunHeader, SimulationSize, TestnetReport } from './report.js'
import type { SimTimings } from './simulate.js'
import type { Workload } from './workload.js'

/** Bytes of KV state per token of the Gemma-3-270M shape (F16 KV), when a calibration did not measure it. */
const DEFAULT_BYTES_PER_TOKEN = 18_461

export interface SimulationInit {
  /** mesh sizes, e.g. [10, 100, 500] */
  sizes: number[]
  profile: Profile
  strategies: Strategy[]
  maxTokens: number
  out: string
  model: { label: string }
  /** the workload for a mesh of n nodes */
  workloadFor: (nodes: number) => Promise<Workload>
  calibration: Calibration
  /** where the calibration came from, for the report */
  calibrationSource: string
  seed?: number
  onProgress?: (text: string) => void
}

/** The calibration inside a previous report.json. */
export async function calibrationFromReport (file: string): Promise<Calibration> {
  let report: Partial<TestnetReport>
  try {
    report = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new TestnetSetupError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const c = report.header?.calibration
  if (report.kind !== 'promptmesh-testnet' || c == null || c.unthrottled == null) throw new TestnetSetupError(`${file} is not a testnet report with a calibration`)
  return c
}

export function timingsFrom (c: Calibration, profile: Profile): SimTimings {
  const rates = c.throttled ?? c.unthrottled
  const hitBlocks = c.localHit != null ? c.localHit.reusedTokens / c.blockTokens : 0
  return {
    prefillTokPerS: rates.prefillTokPerS,
    decodeTokPerS: Number.isFinite(rates.decodeTokPerS) ? rates.decodeTokPerS : (profile.assumedDecodeTokPerS ?? 10),
    bytesPerToken: c.bytesPerToken ?? DEFAULT_BYTES_PER_TOKEN,
    charsPerToken: c.charsPerToken,
    blockTokens: c.blockTokens,
    restoreMsPerBlock: c.localHit != null && hitBlocks > 0 && Number.isFinite(c.localHit.restoreMs) ? round(c.localHit.restoreMs / hitBlocks, 3) : 1
  }
}

export async function runSimulation (init: SimulationInit): Promise<{ report: TestnetReport, files: string[] }> {
  const started = new Date()
  const timings = timingsFrom(init.calibration, init.profile)
  const sizes: SimulationSize[] = []
  let last: { records: TestnetReport['queries'], summary: TestnetReport['summary'], workload: Workload, nodes: number } | undefined
  for (const nodes of init.sizes) {
    const workload = await init.workloadFor(nodes)
    init.onProgress?.(`simulating ${nodes} nodes, ${workload.queries.length} queries × ${init.strategies.length} strategies`)
    const res = simulate({
      nodes,
      queries: workload.queries,
      strategies: init.strategies,
      timings,
      linkMbit: init.profile.linkMbit,
      requestOverheadMs: init.profile.requestOverheadMs,
      maxTokens: init.maxTokens,
      seed: init.seed
    })
    sizes.push({ nodes, queries: workload.queries.length, summary: res.summary })
    last = { records: res.records, summary: res.summary, workload, nodes }
  }
  if (last == null) throw new TestnetSetupError('--simulate needs at least one mesh size')
  const finished = new Date()
  const header: RunHeader = {
    profile: init.profile,
    mode: 'simulation',
    modeLabel: `SIMULATION of ${init.sizes.join(', ')} nodes (discrete-event model with real Bloom filters; no node, model or network ran)`,
    nodes: last.nodes,
    model: init.model,
    strategies: init.strategies,
    workload: { kind: last.workload.kind, source: last.workload.source, queries: last.workload.queries.length, subjects: last.workload.subjects, skippedSubjects: last.workload.skippedSubjects, rounds: last.workload.rounds },
    maxTokens: init.maxTokens,
    calibration: init.calibration,
    limits: {
      cpu: `simulated: prefill ${timings.prefillTokPerS} tok/s, decode ${timings.decodeTokPerS} tok/s (from the calibration)`,
      link: init.profile.linkMbit != null ? `simulated: ${init.profile.linkMbit} Mbit/s per node, ${init.profile.requestOverheadMs} ms per request` : `simulated: unlimited (2 Gbit/s), ${init.profile.requestOverheadMs} ms per request`
    },
    machine: machineInfo(),
    concurrency: `simulated one at a time, ${SIM_QUERY_GAP_MS} ms apart, each strategy from empty stores`,
    notes: [
      'Simulation: tokens are estimated from characters with the calibration\'s characters per token; blocks are cut from the text, so shared prefixes share blocks as with real tokens.',
      'Catalogs follow the node\'s rules (publish after 5 % new keys with a 200 ms debounce, and every 10 s); catalog bytes count each peer once (gossipsub\'s own overhead is not modelled).',
      'Fetching follows the node\'s plan (longest claimed run per peer, parallel requests; broadcast asks peer after peer) and adaptive fetching (compute when the transfer is predicted to be slower, never fetch longer than computing would take).'
    ]
  }
  const report: TestnetReport = {
    kind: 'promptmesh-testnet',
    version: 1,
    runId: randomBytes(3).toString('hex'),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationS: round((finished.getTime() - started.getTime()) / 1000, 1),
    header,
    queries: last.records,
    summary: last.summary,
    simulation: {
      calibrationSource: init.calibrationSource,
      parameters: {
        prefillTokPerS: timings.prefillTokPerS,
        decodeTokPerS: timings.decodeTokPerS,
        bytesPerToken: timings.bytesPerToken,
        charsPerToken: timings.charsPerToken,
        blockTokens: timings.blockTokens,
        restoreMsPerBlock: timings.restoreMsPerBlock,
        linkMbit: init.profile.linkMbit ?? 'unlimited',
        requestOverheadMs: init.profile.requestOverheadMs,
        queryGapMs: SIM_QUERY_GAP_MS
      },
      sizes
    }
  }
  const files = await writeReport(init.out, report)
  return { report, files }
}
