/**
 * The report a run leaves in --out: report.json (header, every query, summary), report.md (the same
 * as tables) and two plots (ttft-bar.svg, ttft-cdf.svg). A simulation or a loopback fallback says so in
 * every one of them.
 */
import { cpus, hostname, loadavg, release, totalmem } from 'node:os'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { barChart, cdfChart } from './svg.js'
import { round } from './summary.js'
import type { Calibration } from './calibrate.js'
import type { Strategy } from './constants.js'
import type { Profile } from './profiles.js'
import type { MeshTotals, QueryRecord, RoundSummary, StrategySummary, Summary } from './summary.js'

export type RunMode = 'netns' | 'loopback' | 'simulation'

export interface MachineInfo {
  hostname: string
  platform: string
  kernel: string
  cpu: string
  cores: number
  memGB: number
  node: string
  loadAvgAtStart: number[]
}

export function machineInfo (): MachineInfo {
  const c = cpus()
  return {
    hostname: hostname(),
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memGB: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    loadAvgAtStart: loadavg().map(v => round(v, 2))
  }
}

export interface RunHeader {
  profile: Profile
  mode: RunMode
  /** one line that every output repeats: how the nodes were run */
  modeLabel: string
  nodes: number
  model: { label: string, path?: string }
  strategies: Strategy[]
  workload: { kind: string, source: string, queries: number, subjects: string[], skippedSubjects: string[], /** absent in reports of older versions: 1 */ rounds?: number }
  maxTokens: number
  threads?: number
  calibration?: Calibration
  limits: {
    cpu: string
    cpuQuotaCores?: number
    cgroup?: string
    link: string
    linkMbit?: number
    qdiscs?: string[]
  }
  machine: MachineInfo
  /** every strategy ran this many times, in alternating order (absent: once) */
  passes?: number
  /** whether nodes decided per request between fetching and computing (absent in older reports: true) */
  adaptiveFetch?: boolean
  /** how queries were scheduled */
  concurrency: string
  notes: string[]
  cleanup?: { ok: boolean, failures: string[] }
}

export interface SimulationSize {
  nodes: number
  queries: number
  summary: Summary
}

export interface TestnetReport {
  kind: 'promptmesh-testnet'
  version: 1
  runId: string
  startedAt: string
  finishedAt: string
  durationS: number
  /** set when the run stopped early (Ctrl-C, failure): the report holds what was measured until then */
  incomplete?: string
  header: RunHeader
  queries: QueryRecord[]
  summary: Summary
  simulation?: {
    /** where the timings come from */
    calibrationSource: string
    parameters: Record<string, number | string>
    sizes: SimulationSize[]
  }
}

const s = (ms: number): string => Number.isFinite(ms) ? (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) : '–'
const pct = (v: number | undefined): string => v == null ? '–' : `${v > 0 ? '−' : '+'}${Math.abs(v).toFixed(1)} %`
const mb = (b: number): string => (b / 1e6).toFixed(b < 1e7 ? 2 : 0)

/** Rows of the results table: one per strategy. */
export function resultRows (summary: Summary, strategies: Strategy[]): string[][] {
  const head = ['strategy', 'queries', 'TTFT mean s', 'median', 'p95', 'TTFT vs none', 'TTLT mean s', 'median', 'p95', 'TTLT vs none', 'hit rate', 'tokens reused', 'MB moved', 'requests', 'wasted', 'skipped']
  const rows = [head]
  for (const strategy of strategies) {
    const x = summary[strategy]
    if (x == null) continue
    rows.push([
      strategy,
      `${x.queries - x.errors}${x.errors > 0 ? ` (+${x.errors} failed)` : ''}`,
      s(x.ttftMs.mean), s(x.ttftMs.median), s(x.ttftMs.p95), strategy === 'none' ? '' : pct(x.ttftReductionPct),
      s(x.ttltMs.mean), s(x.ttltMs.median), s(x.ttltMs.p95), strategy === 'none' ? '' : pct(x.ttltReductionPct),
      `${(x.hitRate * 100).toFixed(0)} %`, `${(x.tokenHitRate * 100).toFixed(0)} %`, mb(x.bytesFetched),
      String(x.requests), String(x.wastedRequests), String(x.fetchSkipped)
    ])
  }
  return rows
}

/** A markdown table; numbers right-aligned unless `left`. */
export function markdownTable (rows: string[][], left = false): string {
  const [head, ...body] = rows
  if (head == null) return ''
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => i === 0 || left ? '---' : '---:').join(' | ')} |`,
    ...body.map(r => `| ${r.join(' | ')} |`)
  ].join('\n')
}

export function textTable (rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((c, i) => i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)).join('  ')).join('\n')
}

/** Lines about exactness and, where both ran, catalog against local. */
export function verdicts (summary: Summary, strategies: Strategy[]): string[] {
  const out: string[] = []
  const em = summary.exactMatches
  if (em != null) {
    for (const [strategy, m] of Object.entries(em.strategies)) {
      out.push(`answers ${strategy} = none (greedy, token for token): ${m.equal}/${m.compared}${m.mismatched.length > 0 ? ` — DIFFER on prompts ${m.mismatched.join(', ')}` : ''}`)
    }
  }
  const cat = summary.catalog
  const repeats = cat?.byRound?.filter(x => x.round > 0) ?? []
  if (repeats.length > 0 && summary.none != null) {
    // the paper (arXiv 2602.22812) reports its −93.12 % TTFT / −50.07 % TTLT for prompts that hit in full
    const none = summary.none.byRound?.filter(x => x.round > 0) ?? []
    const mean = (xs: RoundSummary[], f: (x: RoundSummary) => number): number => xs.reduce((a, x) => a + f(x) * x.queries, 0) / Math.max(1, xs.reduce((a, x) => a + x.queries, 0))
    const ttft = 100 * (1 - mean(repeats, x => x.ttftMeanMs) / mean(none, x => x.ttftMeanMs))
    const ttlt = 100 * (1 - mean(repeats, x => x.ttltMeanMs) / mean(none, x => x.ttltMeanMs))
    out.push(`repeated prompts (rounds ≥ 1, the paper's full-hit case): catalog TTFT ${pct(round(ttft))}, TTLT ${pct(round(ttlt))} against none (paper: −93.12 % / −50.07 %)`)
  }
  const loc = summary.local
  if (cat != null && loc != null && strategies.includes('catalog') && strategies.includes('local')) {
    out.push(`mean TTFT catalog ÷ local: ${(cat.ttftMs.mean / loc.ttftMs.mean).toFixed(3)}`)
  }
  return out
}

/** Rows of the per-round table (empty when the workload had one round). */
export function roundRows (summary: Summary, strategies: Strategy[]): string[][] {
  const rows = [['strategy', 'round', 'queries', 'TTFT mean s', 'TTFT vs none', 'TTLT mean s', 'TTLT vs none', 'hit rate', 'tokens reused', 'sources']]
  for (const strategy of strategies) {
    for (const x of summary[strategy]?.byRound ?? []) {
      rows.push([strategy, x.round === 0 ? '0 (first asks)' : `${x.round} (repeats)`, String(x.queries), s(x.ttftMeanMs), strategy === 'none' ? '' : pct(x.ttftReductionPct),
        s(x.ttltMeanMs), strategy === 'none' ? '' : pct(x.ttltReductionPct), `${(x.hitRate * 100).toFixed(0)} %`, `${(x.tokenHitRate * 100).toFixed(0)} %`,
        Object.entries(x.sources).map(([k, n]) => `${k} ${n}`).join(', ')])
    }
  }
  return rows
}

function sourceRows (summary: Summary, strategies: Strategy[]): string[][] {
  const sources = ['none', 'local', 'remote', 'mixed']
  const rows = [['strategy', ...sources.map(src => `${src}: queries, mean TTFT s`)]]
  for (const strategy of strategies) {
    const x = summary[strategy]
    if (x == null) continue
    rows.push([strategy, ...sources.map(src => x.sources[src] != null ? `${x.sources[src] as number}, ${s(x.ttftBySourceMs[src] as number)}` : '–')])
  }
  return rows
}

function meshRows (summary: Summary, strategies: Strategy[]): string[][] {
  const rows = [['strategy', 'cold prefill tok/s (median)', 'fetch requests', 'wasted', 'kv requests served', 'MB served', 'MB on the link', 'fetch MB/s (median)', 'catalogs published', 'catalogs received', 'false positives', 'catalog MB', 'catalog KB/s per node']]
  for (const strategy of strategies) {
    const m: MeshTotals | undefined = summary[strategy]?.mesh
    if (m == null) continue
    const speed = summary[strategy]?.fetchMBps
    const cold = summary[strategy]?.coldPrefillTokPerS
    rows.push([strategy, cold != null ? cold.toFixed(1) : '–', String(m.fetchRequests), String(m.fetchRequestsWasted), String(m.kvRequestsServed), mb(m.kvBytesServed), m.kvWireBytesServed != null ? mb(m.kvWireBytesServed) : '–', speed != null ? speed.toFixed(2) : '–',
      String(m.catalogPublished), String(m.catalogReceived), String(m.catalogFalsePositives),
      m.catalogBytes != null ? mb(m.catalogBytes) : '–', m.catalogBytesPerNodePerS != null ? (m.catalogBytesPerNodePerS / 1e3).toFixed(2) : '–'])
  }
  return rows
}

function headerRows (r: TestnetReport): string[][] {
  const h = r.header
  const c = h.calibration
  const rows: string[][] = [
    ['', ''],
    ['mode', h.modeLabel],
    ['profile', `${h.profile.name}: ${h.profile.description}`],
    ['nodes', String(h.nodes)],
    ['model', h.model.label],
    ['workload', `${h.workload.kind}: ${h.workload.source}; ${h.workload.queries} queries${(h.workload.rounds ?? 1) > 1 ? ` (${h.workload.rounds} rounds of ${h.workload.queries / (h.workload.rounds as number)}: each round asks every prompt again, one node further on)` : ''}${h.workload.subjects.length > 0 ? `; subjects ${h.workload.subjects.join(', ')}` : ''}${h.workload.skippedSubjects.length > 0 ? ` (left out, prompts too long: ${h.workload.skippedSubjects.join(', ')})` : ''}`],
    ['strategies', h.strategies.join(', ')],
    ['max tokens', String(h.maxTokens)],
    ['CPU', h.limits.cpu],
    ['link', h.limits.link]
  ]
  if (c != null) {
    rows.push(['calibration', calibrationLine(c)])
  }
  rows.push(['queries run', h.concurrency])
  rows.push(['machine', `${h.machine.hostname}: ${h.machine.cores} × ${h.machine.cpu}, ${h.machine.memGB} GB, ${h.machine.platform} ${h.machine.kernel}, Node ${h.machine.node}, load ${h.machine.loadAvgAtStart.join(' ')} at start`])
  rows.push(['run', `${r.runId}, ${r.startedAt}, ${(r.durationS / 60).toFixed(1)} min${r.incomplete != null ? ` — INCOMPLETE: ${r.incomplete}` : ''}`])
  if (h.cleanup != null) rows.push(['cleanup', h.cleanup.ok ? 'everything created was removed' : `FAILED: ${h.cleanup.failures.join('; ')}`])
  return rows
}

export function calibrationLine (c: Calibration): string {
  const perCore = 1000 / c.unthrottled.cpuMsPerToken
  const parts = [`${c.promptTokens}-token prompt, ${c.threads} thread(s): unthrottled prefill ${c.unthrottled.prefillTokPerS.toFixed(0)} tok/s (${perCore.toFixed(0)} tok/s per CPU-second: ${c.unthrottled.cpuMsPerToken.toFixed(2)} CPU-ms per token), decode ${c.unthrottled.decodeTokPerS.toFixed(1)} tok/s`]
  if (c.targetPrefillTokPerS != null) {
    if (c.throttled != null && c.quotaCores != null) {
      parts.push(`quota ${c.quotaCores.toFixed(3)} cores → prefill ${c.throttled.prefillTokPerS.toFixed(1)} tok/s (target ${c.targetPrefillTokPerS}), decode ${c.throttled.decodeTokPerS.toFixed(1)} tok/s${c.assumedDecodeTokPerS != null ? ` (assumed device: ${c.assumedDecodeTokPerS})` : ''}${c.quotaCapped ? ' — CAPPED by the per-node CPU budget' : ''}`)
    } else {
      parts.push(`target ${c.targetPrefillTokPerS} tok/s NOT applied: ${c.cpuLimit}`)
    }
  }
  if (c.chunkBytes != null) parts.push(`chunk ${(c.chunkBytes / 1e3).toFixed(0)} KB (${c.bytesPerToken?.toFixed(0) ?? '?'} B/token)`)
  return parts.join('; ')
}

function queryRows (queries: QueryRecord[]): string[][] {
  const rounds = queries.some(q => (q.round ?? 0) > 0)
  const passes = queries.some(q => q.pass != null)
  const rows = [['strategy', ...(passes ? ['pass'] : []), '#', ...(rounds ? ['round'] : []), 'node', 'subject', 'prompt tok', 'TTFT s', 'TTLT s', 'source', 'reused', 'MB', 'req', 'empty', 'settle s', 'note']]
  for (const q of queries) {
    rows.push([q.strategy, ...(passes ? [String((q.pass ?? 0) + 1)] : []), String(q.index), ...(rounds ? [String(q.round ?? 0)] : []), String(q.node), q.subject ?? '', String(q.promptTokens), s(q.ttftMs), s(q.ttltMs), q.source,
      String(q.reusedTokens), mb(q.bytesFetched), String(q.requests), String(q.emptyRequests),
      q.settleMs === undefined ? '' : q.settleMs === null ? 'timeout' : (q.settleMs / 1000).toFixed(2),
      [q.fetchSkipped === true ? 'fetch skipped' : '', q.error ?? ''].filter(Boolean).join('; ')])
  }
  return rows
}

function scalingRows (sizes: SimulationSize[], strategies: Strategy[]): string[][] {
  const rows = [['nodes', 'queries', 'strategy', 'TTFT mean s', 'TTFT vs none', 'hit rate', 'requests', 'wasted', 'wasted / query', 'false positives', 'catalog KB/s per node']]
  for (const size of sizes) {
    for (const strategy of strategies) {
      const x: StrategySummary | undefined = size.summary[strategy]
      if (x == null) continue
      rows.push([String(size.nodes), String(size.queries), strategy, s(x.ttftMs.mean), strategy === 'none' ? '' : pct(x.ttftReductionPct),
        `${(x.hitRate * 100).toFixed(0)} %`, String(x.requests), String(x.wastedRequests), (x.wastedRequests / Math.max(1, x.queries)).toFixed(2),
        String(x.mesh?.catalogFalsePositives ?? '–'), x.mesh?.catalogBytesPerNodePerS != null ? (x.mesh.catalogBytesPerNodePerS / 1e3).toFixed(2) : '–'])
    }
  }
  return rows
}

export function renderMarkdown (r: TestnetReport): string {
  const h = r.header
  const sim = h.mode === 'simulation'
  const lines: string[] = [
    `# promptmesh testnet: ${h.profile.name}, ${h.nodes} nodes${sim ? ' (SIMULATION)' : ''}`,
    '',
    `> **${h.modeLabel}**`,
    ''
  ]
  if (sim) lines.push('> This is a discrete-event simulation, not a measurement: no node, model or network ran. Timings come from the calibration named below.', '')
  lines.push(markdownTable(headerRows(r), true), '', '## Results', '', markdownTable(resultRows(r.summary, h.strategies)), '')
  lines.push('TTFT/TTLT in seconds as each node measured them (prompt received → first / last token); "vs none" compares means. ' +
    'Hit rate: queries that reused cached tokens. Requests: chunk requests sent to peers; wasted: those that delivered nothing. ' +
    'Skipped: queries where adaptive fetching chose to compute although peers held chunks.', '')
  const v = verdicts(r.summary, h.strategies)
  if (v.length > 0) lines.push(...v.map(x => `- ${x}`), '')
  lines.push('![TTFT and TTLT per strategy](ttft-bar.svg)', '', '![TTFT CDF per strategy](ttft-cdf.svg)', '')
  const byRound = roundRows(r.summary, h.strategies)
  if (byRound.length > 1) {
    lines.push('### By round', '', markdownTable(byRound), '',
      'Round 0 asks every prompt for the first time (at best its 5-shot prefix is cached somewhere); each later round asks the same prompts again, ' +
      'each on a node that has not asked it before, so the whole prompt is in the mesh: the paper\'s full-hit comparison. "vs none" compares with the same round under none.', '')
  }
  lines.push('### TTFT by where the prefix came from', '', markdownTable(sourceRows(r.summary, h.strategies)), '')
  const mesh = meshRows(r.summary, h.strategies)
  if (mesh.length > 1) {
    lines.push('## Mesh counters', '', markdownTable(mesh), '')
    if (!sim) lines.push('Summed over every node\'s /metrics at the end of each strategy, so they include the warm-up and private prompts; "MB served" counts what servers wrote, including transfers the requester gave up on; "MB on the link" the same as sent (chunks in the kv protocol\'s lossless wire encoding count their encoded size).', '')
  }
  if (r.simulation != null) {
    lines.push('## Simulation', '', `Timings from: ${r.simulation.calibrationSource}.`, '')
    lines.push(markdownTable([['parameter', 'value'], ...Object.entries(r.simulation.parameters).map(([k, val]) => [k, String(val)])], true), '')
    if (r.simulation.sizes.length > 0) lines.push('### By mesh size', '', markdownTable(scalingRows(r.simulation.sizes, h.strategies)), '')
  }
  lines.push('## Assumptions', '', ...h.profile.assumptions.map(a => `- ${a}`), '', '## Limitations', '', ...h.profile.limitations.map(a => `- ${a}`), '')
  if (h.notes.length > 0) lines.push('## Notes', '', ...h.notes.map(n => `- ${n}`), '')
  if (h.limits.qdiscs != null && h.limits.qdiscs.length > 0) lines.push('<details><summary>qdiscs</summary>', '', '```', ...h.limits.qdiscs, '```', '', '</details>', '')
  if (r.queries.length > 0 && r.queries.length <= 2_000) lines.push('## Queries', '', markdownTable(queryRows(r.queries)), '')
  return `${lines.join('\n')}\n`
}

export function renderPlots (r: TestnetReport): { bar: string, cdf: string } {
  const h = r.header
  const tag = h.mode === 'simulation' ? 'SIMULATION' : h.mode === 'loopback' ? 'loopback fallback' : 'namespaces + mDNS'
  const subtitle = `${h.profile.name}, ${h.nodes} nodes, ${h.workload.queries} queries, ${tag}`
  const strategies = h.strategies.filter(x => r.summary[x] != null)
  const bar = barChart({
    title: 'Time to first / last token by strategy',
    subtitle,
    unit: 'seconds',
    series: ['TTFT', 'TTLT'],
    groups: strategies.map(x => {
      const sum = r.summary[x] as StrategySummary
      return { label: x, bars: [{ series: 'TTFT', value: sum.ttftMs.mean / 1000, whisker: sum.ttftMs.p95 / 1000 }, { series: 'TTLT', value: sum.ttltMs.mean / 1000, whisker: sum.ttltMs.p95 / 1000 }] }
    })
  })
  const cdf = cdfChart({
    title: 'TTFT distribution by strategy',
    subtitle,
    unit: 'TTFT, seconds',
    series: strategies.map(x => ({ label: x, values: r.queries.filter(q => q.strategy === x && q.error == null).map(q => q.ttftMs / 1000) }))
  })
  return { bar, cdf }
}

/** Pretty JSON with one line per query (a run has hundreds). */
export function reportJson (r: TestnetReport): string {
  const marker = '"__QUERIES__"'
  const queries = r.queries.length === 0 ? '[]' : `[\n${r.queries.map(q => `  ${JSON.stringify(q)}`).join(',\n')}\n ]`
  return `${JSON.stringify({ ...r, queries: '__QUERIES__' }, null, 1).replace(marker, () => queries)}\n`
}

export async function writeReport (out: string, r: TestnetReport): Promise<string[]> {
  await mkdir(out, { recursive: true })
  const { bar, cdf } = renderPlots(r)
  const files: Array<[string, string]> = [
    ['report.json', reportJson(r)],
    ['report.md', renderMarkdown(r)],
    ['ttft-bar.svg', bar],
    ['ttft-cdf.svg', cdf]
  ]
  for (const [name, text] of files) await writeFile(join(out, name), text)
  return files.map(([name]) => join(out, name))
}
