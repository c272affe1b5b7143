/**
 * What a run measured, per query and per strategy: the records both the real testnet and the
 * simulation produce, and the summary computed from them (means, median, p95, reductions against
 * `none`, hit rates, bytes and requests, exactness of answers against `none`).
 */
import type { Strategy } from './constants.js'

export interface QueryRecord {
  strategy: Strategy
  /** position in the workload (the same prompt on every strategy) */
  index: number
  node: number
  subject?: string
  /** workload round: 0 first ask, r ≥ 1 the prompt asked again on another node (absent: 0) */
  round?: number
  /** runs of several passes (--passes): which pass, 0-based (absent: 0) */
  pass?: number
  promptTokens: number
  ttftMs: number
  ttltMs: number
  reusedTokens: number
  localTokens: number
  remoteTokens: number
  /** none | local | remote | mixed */
  source: string
  bytesFetched: number
  /** peers that served chunks */
  peers: number
  /** chunk requests this query sent to peers, and those that found nothing */
  requests: number
  emptyRequests: number
  /** where requests/emptyRequests come from: the node's answer, its /metrics counters, or the simulation */
  requestsFrom: 'answer' | 'metrics' | 'simulated'
  /** the node chose to compute although peers had chunks (adaptive fetching) */
  fetchSkipped?: boolean
  /** generated token ids (greedy); empty in a simulation */
  tokens: number[]
  timings: Record<string, number>
  /** catalog only: how long the querying node's new catalog took to reach every peer (null: not within the limit) */
  settleMs?: number | null
  error?: string
}

export interface Stats {
  mean: number
  median: number
  p95: number
  min: number
  max: number
}

export interface MeshTotals {
  /** summed over every node's /metrics (real runs) or counted (simulation) */
  fetchRequests: number
  fetchRequestsWasted: number
  kvRequestsServed: number
  kvBytesServed: number
  /** the same as sent on the links (chunks in a wire encoding count their encoded size); absent in simulations */
  kvWireBytesServed?: number
  catalogPublished: number
  catalogReceived: number
  catalogFalsePositives: number
  /** simulation only: catalog bytes delivered to peers (each peer counted once; gossip overhead excluded) */
  catalogBytes?: number
  /** simulation only: catalog bytes each node receives per second, on average */
  catalogBytesPerNodePerS?: number
}

/** Mesh counters of two passes (--passes) of the same strategy, added up. */
export function addTotals (a: MeshTotals | undefined, b: MeshTotals): MeshTotals {
  if (a == null) return b
  const sum = (x?: number, y?: number): number | undefined => x == null && y == null ? undefined : (x ?? 0) + (y ?? 0)
  return {
    fetchRequests: a.fetchRequests + b.fetchRequests,
    fetchRequestsWasted: a.fetchRequestsWasted + b.fetchRequestsWasted,
    kvRequestsServed: a.kvRequestsServed + b.kvRequestsServed,
    kvBytesServed: a.kvBytesServed + b.kvBytesServed,
    ...(sum(a.kvWireBytesServed, b.kvWireBytesServed) != null ? { kvWireBytesServed: sum(a.kvWireBytesServed, b.kvWireBytesServed) } : {}),
    catalogPublished: a.catalogPublished + b.catalogPublished,
    catalogReceived: a.catalogReceived + b.catalogReceived,
    catalogFalsePositives: a.catalogFalsePositives + b.catalogFalsePositives
  }
}

export interface StrategySummary {
  queries: number
  errors: number
  ttftMs: Stats
  ttltMs: Stats
  /** 100 × (1 − mean / mean of `none`) */
  ttftReductionPct?: number
  ttltReductionPct?: number
  /** the same on medians */
  ttftMedianReductionPct?: number
  /** queries that reused at least one cached token */
  hitRate: number
  /** reused prompt tokens ÷ prompt tokens */
  tokenHitRate: number
  sources: Record<string, number>
  /** mean TTFT by where the prefix came from (none, local, remote, mixed) */
  ttftBySourceMs: Record<string, number>
  promptTokens: number
  reusedTokens: number
  bytesFetched: number
  requests: number
  wastedRequests: number
  /** queries where adaptive fetching chose to compute */
  fetchSkipped: number
  /** median chunk transfer rate of queries that fetched, MB/s (bytes ÷ fetch time) */
  fetchMBps?: number
  /** median prompt tokens per second of prefill in the queries computed from scratch (the device's effective rate during the run) */
  coldPrefillTokPerS?: number
  /** catalog only: queries after which the new catalog did not reach every peer in time */
  unsettled?: number
  /** workloads of several rounds: the same figures per round (round 0: first asks; later rounds: repeats on other nodes) */
  byRound?: RoundSummary[]
  mesh?: MeshTotals
}

export interface RoundSummary {
  round: number
  queries: number
  ttftMeanMs: number
  ttltMeanMs: number
  /** against the same round's queries under `none` (the same prompts) */
  ttftReductionPct?: number
  ttltReductionPct?: number
  hitRate: number
  tokenHitRate: number
  sources: Record<string, number>
}

export interface ExactMatch {
  compared: number
  equal: number
  /** prompt indices whose answer tokens differ from `none`'s */
  mismatched: number[]
  /** per prompt index: equal to `none` in every pass (null: failed in every pass) */
  byIndex: Array<boolean | null>
}

export interface ExactMatches {
  reference: 'none'
  /** every compared strategy gave `none`'s tokens on every prompt */
  allEqual: boolean
  strategies: Partial<Record<Strategy, ExactMatch>>
}

/** Keyed by strategy, plus `exactMatches` (answers against `none`, greedy decoding: must be equal). */
export type Summary = Partial<Record<Strategy, StrategySummary>> & { exactMatches?: ExactMatches }

/** Linear-interpolated quantile (q in [0, 1]) of unsorted values. */
export function quantile (values: number[], q: number): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (pos - lo)
}

export function stats (values: number[]): Stats {
  if (values.length === 0) return { mean: NaN, median: NaN, p95: NaN, min: NaN, max: NaN }
  return {
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    median: quantile(values, 0.5),
    p95: quantile(values, 0.95),
    min: Math.min(...values),
    max: Math.max(...values)
  }
}

const reduction = (value: number, base: number): number | undefined => Number.isFinite(value) && Number.isFinite(base) && base > 0 ? round(100 * (1 - value / base), 2) : undefined

export function round (x: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

function roundStats (s: Stats): Stats {
  return { mean: round(s.mean), median: round(s.median), p95: round(s.p95), min: round(s.min), max: round(s.max) }
}

export function summarizeStrategy (records: QueryRecord[], mesh?: MeshTotals): StrategySummary {
  const ok = records.filter(r => r.error == null)
  const sources: Record<string, number> = {}
  for (const r of ok) sources[r.source] = (sources[r.source] ?? 0) + 1
  const fetched = ok.filter(r => r.bytesFetched > 0 && (r.timings.fetchMs ?? 0) > 0)
  const promptTokens = ok.reduce((a, r) => a + r.promptTokens, 0)
  const reusedTokens = ok.reduce((a, r) => a + r.reusedTokens, 0)
  const settles = ok.filter(r => r.settleMs !== undefined)
  const cold = ok.filter(r => r.reusedTokens === 0 && r.ttftMs > 0)
  return {
    queries: records.length,
    errors: records.length - ok.length,
    ttftMs: roundStats(stats(ok.map(r => r.ttftMs))),
    ttltMs: roundStats(stats(ok.map(r => r.ttltMs))),
    hitRate: ok.length === 0 ? 0 : round(ok.filter(r => r.reusedTokens > 0).length / ok.length, 4),
    tokenHitRate: promptTokens === 0 ? 0 : round(reusedTokens / promptTokens, 4),
    sources,
    ttftBySourceMs: Object.fromEntries(Object.keys(sources).map(src => {
      const xs = ok.filter(r => r.source === src)
      return [src, round(xs.reduce((a, r) => a + r.ttftMs, 0) / xs.length)]
    })),
    promptTokens,
    reusedTokens,
    bytesFetched: ok.reduce((a, r) => a + r.bytesFetched, 0),
    requests: ok.reduce((a, r) => a + r.requests, 0),
    wastedRequests: ok.reduce((a, r) => a + r.emptyRequests, 0),
    fetchSkipped: ok.filter(r => r.fetchSkipped === true).length,
    ...(fetched.length > 0 ? { fetchMBps: round(quantile(fetched.map(r => r.bytesFetched / 1e6 / ((r.timings.fetchMs as number) / 1000)), 0.5)) } : {}),
    ...(cold.length > 0 ? { coldPrefillTokPerS: round(quantile(cold.map(r => r.promptTokens / ((r.timings.prefillMs ?? r.ttftMs) / 1000)), 0.5), 1) } : {}),
    ...(settles.length > 0 ? { unsettled: settles.filter(r => r.settleMs === null).length } : {}),
    ...(mesh != null ? { mesh } : {})
  }
}

export function exactMatches (records: QueryRecord[], strategies: Strategy[]): ExactMatches | undefined {
  if (!strategies.includes('none')) return undefined
  // each answer against none's for the same prompt in the same pass
  const keyOf = (r: QueryRecord): string => `${r.pass ?? 0}/${r.index}`
  const ref = new Map(records.filter(r => r.strategy === 'none').map(r => [keyOf(r), r]))
  const indices = [...new Set(records.filter(r => r.strategy === 'none').map(r => r.index))].sort((a, b) => a - b)
  const passes = [...new Set(records.map(r => r.pass ?? 0))].sort((a, b) => a - b)
  const out: ExactMatches = { reference: 'none', allEqual: true, strategies: {} }
  for (const strategy of strategies.filter(s => s !== 'none')) {
    const mine = new Map(records.filter(r => r.strategy === strategy).map(r => [keyOf(r), r]))
    const m: ExactMatch = { compared: 0, equal: 0, mismatched: [], byIndex: [] }
    for (const i of indices) {
      let verdict: boolean | null = null
      for (const pass of passes) {
        const a = ref.get(`${pass}/${i}`)
        const b = mine.get(`${pass}/${i}`)
        if (a == null || b == null || a.error != null || b.error != null) continue
        const equal = a.tokens.length === b.tokens.length && a.tokens.every((t, k) => t === b.tokens[k])
        m.compared++
        if (equal) m.equal++
        verdict = (verdict ?? true) && equal
      }
      if (verdict === false) m.mismatched.push(i)
      m.byIndex[i] = verdict
    }
    if (m.equal !== m.compared || m.compared === 0) out.allEqual = false
    out.strategies[strategy] = m
  }
  return out
}

const mean = (xs: number[]): number => xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length

/** Per-round figures of one strategy; `none` (when run) gives the reference of the same round. */
function summarizeRounds (records: QueryRecord[], reference?: QueryRecord[]): RoundSummary[] {
  const ok = records.filter(r => r.error == null)
  const rounds = [...new Set(ok.map(r => r.round ?? 0))].sort((a, b) => a - b)
  return rounds.map(n => {
    const xs = ok.filter(r => (r.round ?? 0) === n)
    const ref = reference?.filter(r => r.error == null && (r.round ?? 0) === n)
    const prompt = xs.reduce((a, r) => a + r.promptTokens, 0)
    const sources: Record<string, number> = {}
    for (const r of xs) sources[r.source] = (sources[r.source] ?? 0) + 1
    const ttft = mean(xs.map(r => r.ttftMs))
    const ttlt = mean(xs.map(r => r.ttltMs))
    return {
      round: n,
      queries: xs.length,
      ttftMeanMs: round(ttft),
      ttltMeanMs: round(ttlt),
      ...(ref != null && ref.length > 0 ? { ttftReductionPct: reduction(ttft, mean(ref.map(r => r.ttftMs))), ttltReductionPct: reduction(ttlt, mean(ref.map(r => r.ttltMs))) } : {}),
      hitRate: xs.length === 0 ? 0 : round(xs.filter(r => r.reusedTokens > 0).length / xs.length, 4),
      tokenHitRate: prompt === 0 ? 0 : round(xs.reduce((a, r) => a + r.reusedTokens, 0) / prompt, 4),
      sources
    }
  })
}

/** The summary of a run: one entry per strategy, reductions against `none`, answers against `none`. */
export function summarize (records: QueryRecord[], strategies: Strategy[], mesh: Partial<Record<Strategy, MeshTotals>> = {}, options: { compareTokens?: boolean } = {}): Summary {
  const summary: Summary = {}
  for (const s of strategies) summary[s] = summarizeStrategy(records.filter(r => r.strategy === s), mesh[s])
  const none = summary.none
  if (none != null) {
    for (const s of strategies) {
      const x = summary[s] as StrategySummary
      x.ttftReductionPct = reduction(x.ttftMs.mean, none.ttftMs.mean)
      x.ttltReductionPct = reduction(x.ttltMs.mean, none.ttltMs.mean)
      x.ttftMedianReductionPct = reduction(x.ttftMs.median, none.ttftMs.median)
    }
  }
  if (records.some(r => (r.round ?? 0) > 0)) {
    const reference = strategies.includes('none') ? records.filter(r => r.strategy === 'none') : undefined
    for (const s of strategies) (summary[s] as StrategySummary).byRound = summarizeRounds(records.filter(r => r.strategy === s), reference)
  }
  if (options.compareTokens !== false) {
    const em = exactMatches(records, strategies)
    if (em != null) summary.exactMatches = em
  }
  return summary
}
