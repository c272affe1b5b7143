import { resolve } from 'node:path'
import { DEFAULT_BLOCK_TOKENS } from '../cache/constants.js'
import { synthesizedModel } from '../model/cached.js'
import { SHAPES } from '../model/synth.js'
import {
  buildWorkload, calibrateModel, calibrationFromReport, DEFAULT_MAX_TOKENS, DEFAULT_NODES, DEFAULT_QUERIES, DEFAULT_SHAPE,
  isProfileName, MAX_NODES, PROFILE_NAMES, Progress, resolveProfile, resultRows, roundRows, runSimulation, runTestnet, SIM_MAX_NODES,
  SIM_QUERIES_PER_NODE, STRATEGIES, textTable, verdicts
} from '../../testnet/index.js'
import { flag, int, num, parse, str, UsageError } from './args.js'
import type { Strategy, TestnetEvent, TestnetReport } from '../../testnet/index.js'
import type { ShapeName } from '../model/synth.js'

/** More passes than this is a typo: each pass restarts every node for every strategy. */
const MAX_PASSES = 10

const USAGE = `promptmesh testnet [options]

Runs a mesh of real nodes on this machine with Pi-class CPUs and Wi-Fi-class links, replays a
workload under each caching strategy (same queries, empty caches each time) and reports how TTFT and
TTLT change. Needs root for network namespaces, the bridge, tc and cgroups; without root it falls
back to nodes on loopback with static peers and no limits (and says so in every output).

Options:
  --nodes N             nodes in the mesh (default ${DEFAULT_NODES}, at most ${MAX_NODES})
  --profile P           ${PROFILE_NAMES.join(' | ')} (default pi-zero-2w)
  --prefill-rate R      calibrate the CPU quota to R prompt tokens/s (0: no CPU limit)
  --link-rate MBIT      per-node link rate in Mbit/s, each direction (0: no limit)
  --mmlu DIR            MMLU directory (dev/, test/): 5-shot prompts, subject after subject
  --prompts FILE        JSON lines {"prompt": "...", "node": <optional index>}, in order
                        (neither: synthetic 5-shot prompts)
  --queries N           queries per strategy and round (default ${DEFAULT_QUERIES}; --simulate: ${SIM_QUERIES_PER_NODE} per node)
  --rounds R            ask the whole sequence R times, each round one node further on, so repeats
                        find the whole prompt in the mesh: the paper's full-hit case (default 1, R ≤ nodes)
  --subjects N          MMLU/synthetic subjects (default: one per 6 queries)
  --max-prompt-chars N  leave out subjects with longer prompts (default 8000)
  --strategies LIST     comma-separated from ${STRATEGIES.join(',')} (default all)
  --passes N            run every strategy N times, in the listed order, then reversed, and so on, so
                        that a machine whose speed drifts during the run favours no strategy (default 1)
  --model FILE          GGUF model for every node
  --shape S             synthetic model shape when no --model: ${Object.keys(SHAPES).join(' | ')} (default ${DEFAULT_SHAPE})
  --max-tokens N        tokens generated per query (default ${DEFAULT_MAX_TOKENS})
  --threads N           evaluation threads per node (default 1: nodes share this machine's cores)
  --block-tokens N      tokens per cached block on every node (default ${DEFAULT_BLOCK_TOKENS})
  --no-adaptive-fetch   nodes always fetch what peers hold, even when computing looks faster
  --mode M              auto | netns | loopback (default auto: namespaces where possible)
  --settle-ms MS        catalog: wait at most MS after each query for its catalog to reach every peer (default 15000)
  --out DIR             report directory (default testnet-out): report.json, report.md, ttft-bar.svg, ttft-cdf.svg, logs/
  --simulate N[,N…]     simulate meshes of N nodes instead (discrete-event model, real Bloom filters)
  --calibration FILE    --simulate: take timings from a previous report.json instead of calibrating now
  --json                print the report's summary as JSON on stdout

Examples:
  promptmesh testnet --profile pi-zero-2w --mmlu ../shared/data/mmlu --nodes 4 --queries 24 --out /tmp/tn-pi
  promptmesh testnet --profile pi-zero-2w --mmlu ../shared/data/mmlu --queries 12 --rounds 2 --out /tmp/tn-paper
  promptmesh testnet --profile fast-cpu-slow-link --strategies local,catalog
  promptmesh testnet --simulate 10,100,500 --mmlu ../shared/data/mmlu --calibration /tmp/tn-pi/report.json`

function strategiesOf (value: string | undefined): Strategy[] {
  if (value == null) return [...STRATEGIES]
  const list = value.split(',').map(s => s.trim()).filter(Boolean)
  for (const s of list) if (!(STRATEGIES as readonly string[]).includes(s)) throw new UsageError(`unknown strategy ${JSON.stringify(s)}: use ${STRATEGIES.join(', ')}`)
  if (list.length === 0) throw new UsageError('--strategies is empty')
  // always in the canonical order, none first: the others are compared against it
  return STRATEGIES.filter(s => list.includes(s))
}

function sizesOf (value: string): number[] {
  const sizes = value.split(',').map(s => Number(s.trim().replace(/_/g, '')))
  for (const n of sizes) if (!Number.isInteger(n) || n < 2 || n > SIM_MAX_NODES) throw new UsageError(`--simulate takes node counts from 2 to ${SIM_MAX_NODES}, got ${JSON.stringify(value)}`)
  return sizes
}

function printSummary (report: TestnetReport, files: string[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ mode: report.header.mode, modeLabel: report.header.modeLabel, incomplete: report.incomplete, summary: report.summary, files })}\n`)
    return
  }
  const h = report.header
  const lines = [
    '',
    `${h.modeLabel}`,
    `profile ${h.profile.name}, ${h.nodes} nodes, ${h.workload.queries} queries (${h.workload.kind}), CPU: ${h.limits.cpu}; link: ${h.limits.link}`,
    ...(report.incomplete != null ? [`INCOMPLETE: ${report.incomplete}`] : []),
    '',
    textTable(resultRows(report.summary, h.strategies)),
    '',
    ...(roundRows(report.summary, h.strategies).length > 1 ? [textTable(roundRows(report.summary, h.strategies)), ''] : []),
    ...verdicts(report.summary, h.strategies),
    ...(files.length > 0 ? ['', `report: ${files.join(', ')}`] : [])
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

export async function testnetCommand (argv: string[]): Promise<number> {
  const p = parse(argv, {
    nodes: { type: 'string' },
    profile: { type: 'string' },
    'prefill-rate': { type: 'string' },
    'link-rate': { type: 'string' },
    mmlu: { type: 'string' },
    prompts: { type: 'string' },
    queries: { type: 'string' },
    rounds: { type: 'string' },
    subjects: { type: 'string' },
    'max-prompt-chars': { type: 'string' },
    strategies: { type: 'string' },
    passes: { type: 'string' },
    model: { type: 'string' },
    shape: { type: 'string' },
    'max-tokens': { type: 'string' },
    threads: { type: 'string' },
    'block-tokens': { type: 'string' },
    'no-adaptive-fetch': { type: 'boolean' },
    mode: { type: 'string' },
    'settle-ms': { type: 'string' },
    out: { type: 'string' },
    simulate: { type: 'string' },
    calibration: { type: 'string' },
    json: { type: 'boolean' }
  }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}\n\n${USAGE}`)

  const profileName = str(p, 'profile') ?? 'pi-zero-2w'
  if (!isProfileName(profileName)) throw new UsageError(`unknown profile ${JSON.stringify(profileName)}: use ${PROFILE_NAMES.join(', ')}`)
  const prefill = num(p, 'prefill-rate')
  const link = num(p, 'link-rate')
  if ((prefill != null && prefill < 0) || (link != null && link < 0)) throw new UsageError('--prefill-rate and --link-rate must not be negative')
  const profile = resolveProfile(profileName, { prefillTokPerS: prefill, linkMbit: link })
  if (str(p, 'mmlu') != null && str(p, 'prompts') != null) throw new UsageError('--mmlu and --prompts exclude each other')
  if (str(p, 'model') != null && str(p, 'shape') != null) throw new UsageError('--model and --shape exclude each other')
  const shape = str(p, 'shape') ?? DEFAULT_SHAPE
  if (!(shape in SHAPES)) throw new UsageError(`unknown shape ${JSON.stringify(shape)}: use ${Object.keys(SHAPES).join(', ')}`)
  const mode = str(p, 'mode') ?? 'auto'
  if (mode !== 'auto' && mode !== 'netns' && mode !== 'loopback') throw new UsageError('--mode must be auto, netns or loopback')
  const strategies = strategiesOf(str(p, 'strategies'))
  const maxTokens = int(p, 'max-tokens', 1) ?? DEFAULT_MAX_TOKENS
  const passes = int(p, 'passes', 1) ?? 1
  if (passes > MAX_PASSES) throw new UsageError(`--passes is at most ${MAX_PASSES}`)
  const queries = int(p, 'queries', 1)
  const rounds = int(p, 'rounds', 1)
  const subjects = int(p, 'subjects', 1)
  const maxPromptChars = int(p, 'max-prompt-chars', 1)
  const threads = int(p, 'threads', 1)
  const blockTokens = int(p, 'block-tokens', 1)
  const settleMs = int(p, 'settle-ms', 0)
  const out = resolve(str(p, 'out') ?? 'testnet-out')
  const json = flag(p, 'json')
  const simulate = str(p, 'simulate')
  const nodes = int(p, 'nodes', 2) ?? DEFAULT_NODES
  if (simulate == null && nodes > MAX_NODES) throw new UsageError(`--nodes is at most ${MAX_NODES} on one machine; use --simulate for larger meshes`)
  if (simulate == null && str(p, 'calibration') != null) throw new UsageError('--calibration goes with --simulate')
  if (simulate != null && passes > 1) throw new UsageError('--passes is for real runs (a simulation does not drift)')
  const workloadFor = async (n: number, q?: number): Promise<Awaited<ReturnType<typeof buildWorkload>>> => await buildWorkload({
    mmlu: str(p, 'mmlu'), prompts: str(p, 'prompts'), queries: q, subjects, nodes: n, maxPromptChars, rounds
  })

  const progress = new Progress(process.stderr)
  const controller = new AbortController()
  let interrupts = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts++
    if (interrupts === 1) {
      progress.line(`${signal}: stopping the nodes and removing namespaces, cgroups and processes (again to force)…`)
      controller.abort(new Error(signal))
    } else {
      // the exit hook removes what is left, synchronously
      process.exit(130)
    }
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const onEvent = (e: TestnetEvent): void => {
    if (e.type === 'phase') progress.line(e.text)
    else if (e.type === 'warn') progress.line(`warning: ${e.text}`)
    else {
      const r = e.record
      const detail = `${r.pass != null ? `pass ${r.pass + 1} ` : ''}${r.error != null ? `#${r.index} failed` : `#${r.index} node ${r.node}: ${r.source}, TTFT ${(r.ttftMs / 1000).toFixed(2)} s`}`
      // a bar on a terminal; one line per query in a log
      if (process.stderr.isTTY) progress.update(e.strategy, e.done, e.total, detail)
      else progress.line(`  ${e.strategy} ${e.done}/${e.total} ${detail}`)
    }
  }

  try {
    let modelPath = str(p, 'model')
    let modelLabel = modelPath ?? `synthetic ${shape} (deterministic pseudo-random weights)`
    if (modelPath == null && (simulate == null || str(p, 'calibration') == null)) {
      progress.line(`model: ${modelLabel}`)
      modelPath = await synthesizedModel(shape as ShapeName)
    }
    if (modelPath != null && str(p, 'model') != null) modelLabel = modelPath

    if (simulate != null) {
      const sizes = sizesOf(simulate)
      const calFile = str(p, 'calibration')
      let calibration
      let source: string
      if (calFile != null) {
        calibration = await calibrationFromReport(calFile)
        source = `calibration in ${resolve(calFile)}`
      } else {
        const cal = await calibrateModel({ profile, model: { path: modelPath as string, label: modelLabel }, out, mode: mode as 'auto', threads, blockTokens, nodes, signal: controller.signal, onEvent })
        calibration = cal.calibration
        source = `a calibration run just now on ${modelLabel} (${cal.modeLabel})`
      }
      const { report, files } = await runSimulation({
        sizes,
        profile,
        strategies,
        maxTokens,
        out,
        model: { label: modelLabel },
        workloadFor: async n => await workloadFor(n, queries ?? SIM_QUERIES_PER_NODE * n),
        calibration,
        calibrationSource: source,
        onProgress: text => progress.line(text)
      })
      progress.end()
      printSummary(report, files, json)
      return 0
    }

    const workload = await workloadFor(nodes, queries ?? DEFAULT_QUERIES)
    try {
      const { report, files } = await runTestnet({
        nodes,
        profile,
        workload,
        strategies,
        passes,
        model: { path: modelPath as string, label: modelLabel },
        maxTokens,
        out,
        mode: mode as 'auto',
        threads,
        blockTokens,
        adaptiveFetch: !flag(p, 'no-adaptive-fetch'),
        settleMs,
        signal: controller.signal,
        onEvent
      })
      progress.end()
      printSummary(report, files, json)
      if (report.summary.exactMatches != null && !report.summary.exactMatches.allEqual) {
        process.stderr.write('promptmesh: cached answers differ from uncached ones (see report.md)\n')
        return 1
      }
      return 0
    } catch (err) {
      progress.end()
      const partial = err as Error & { report?: TestnetReport, files?: string[] }
      if (partial.report != null) printSummary(partial.report, partial.files ?? [], json)
      throw err
    }
  } catch (err) {
    if (controller.signal.aborted) return 130
    throw err
  } finally {
    progress.end()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
