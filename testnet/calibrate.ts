/**
 * Calibration: measure what a node does unthrottled, then find the CPU quota at which prefill runs at
 * the profile's rate. The first guess comes from CPU time per prompt token (read from /proc, so it
 * does not depend on how busy the machine is); each throttled measurement then corrects the quota
 * proportionally until the rate is within CALIBRATION_TOLERANCE. Every calibration prompt starts with
 * a fresh nonce, so it is always computed from scratch and never shares a chunk with the workload.
 */
import { CALIBRATION_MAX_ITERATIONS, CALIBRATION_MAX_TOKENS, CALIBRATION_PROMPT_CHARS, CALIBRATION_TOLERANCE } from './constants.js'
import { CalibrationError } from './errors.js'
import { round } from './summary.js'
import type { CpuLimiter } from './cgroups.js'
import type { Completion, TestnetNode } from './nodes.js'

export interface RateSample {
  quotaCores?: number
  prefillTokPerS: number
  decodeTokPerS: number
  ttftMs: number
  ttltMs: number
}

export interface Calibration {
  threads: number
  /** tokens per cached block (the node's default) */
  blockTokens: number
  promptTokens: number
  promptChars: number
  charsPerToken: number
  unthrottled: RateSample & { cpuMsPerToken: number, coresUsed: number }
  targetPrefillTokPerS?: number
  assumedDecodeTokPerS?: number
  /** per node, in cores */
  quotaCores?: number
  maxQuotaCores?: number
  quotaCapped?: boolean
  throttled?: RateSample
  iterations: RateSample[]
  /** how the CPU was limited, or why it was not */
  cpuLimit: string
  /** bytes of one chunk and per prompt token, from the calibration node's store */
  chunkBytes?: number
  bytesPerToken?: number
  /** the same prompt again on the throttled node: a local hit */
  localHit?: { ttftMs: number, restoreMs: number, reusedTokens: number }
}

const FILLER = 'A small single-board computer on a shelf answers questions from the people in the house. ' +
  'Each question starts with the same instructions and a few worked examples, followed by something new. ' +
  'The board is slow at reading long prompts, so it keeps what it has read and asks its neighbours for what they read. '

function calibrationPrompt (nonce: string): string {
  let text = `Calibration ${nonce}. `
  while (text.length < CALIBRATION_PROMPT_CHARS) text += FILLER
  return text.slice(0, CALIBRATION_PROMPT_CHARS)
}

function sample (c: Completion, quotaCores?: number): RateSample {
  const decodeMs = c.ttltMs - c.ttftMs
  return {
    ...(quotaCores != null ? { quotaCores: round(quotaCores, 4) } : {}),
    prefillTokPerS: round(c.promptTokens / (c.ttftMs / 1000), 2),
    decodeTokPerS: c.tokens.length > 1 && decodeMs > 0 ? round((c.tokens.length - 1) / (decodeMs / 1000), 2) : NaN,
    ttftMs: round(c.ttftMs),
    ttltMs: round(c.ttltMs)
  }
}

export interface CalibrateOptions {
  node: TestnetNode
  /** node slot whose cgroup the node is in (and whose quota is tuned) */
  slot: number
  limiter?: CpuLimiter
  /** why there is no limiter (reported) */
  limiterUnavailable?: string
  targetPrefillTokPerS?: number
  assumedDecodeTokPerS?: number
  maxQuotaCores: number
  threads: number
  blockTokens: number
  runId: string
  signal: AbortSignal
  onStep?: (text: string) => void
}

export async function calibrate (o: CalibrateOptions): Promise<Calibration> {
  const { node, signal } = o
  let n = 0
  const nonce = (): string => `${o.runId}-${n++}`
  const step = o.onStep ?? (() => {})

  await node.complete('Calibration warm-up.', 2, signal)
  // unthrottled: twice, the second counts (the first pays for page faults and allocations)
  let unthrottled: Calibration['unthrottled'] | undefined
  let promptTokens = 0
  for (let i = 0; i < 2; i++) {
    const prompt = calibrationPrompt(nonce())
    const cpu0 = await node.cpuMs()
    const c = await node.complete(prompt, CALIBRATION_MAX_TOKENS, signal)
    const cpu = await node.cpuMs() - cpu0
    promptTokens = c.promptTokens
    if (c.promptTokens < 2 * o.blockTokens || !(c.ttftMs > 0)) {
      throw new CalibrationError(`the calibration prompt gave ${c.promptTokens} tokens in ${c.ttftMs} ms: too little to measure a prefill rate`)
    }
    // CPU spent on prefill: the TTFT share of what the query used
    const prefillCpuMs = cpu * (c.ttftMs / Math.max(1, c.ttltMs))
    unthrottled = { ...sample(c), cpuMsPerToken: round(prefillCpuMs / c.promptTokens, 4), coresUsed: round(prefillCpuMs / Math.max(1, c.ttftMs), 3) }
  }
  const u = unthrottled as Calibration['unthrottled']
  step(`unthrottled: prefill ${u.prefillTokPerS.toFixed(0)} tok/s, decode ${u.decodeTokPerS.toFixed(1)} tok/s, ${u.cpuMsPerToken.toFixed(2)} CPU-ms per prompt token`)

  const result: Calibration = {
    threads: o.threads,
    blockTokens: o.blockTokens,
    promptTokens,
    promptChars: CALIBRATION_PROMPT_CHARS,
    charsPerToken: round(CALIBRATION_PROMPT_CHARS / Math.max(1, promptTokens), 3),
    unthrottled: u,
    iterations: [],
    cpuLimit: o.limiter != null ? `${o.limiter.kind} quota` : (o.limiterUnavailable ?? 'no CPU limit asked'),
    ...(o.targetPrefillTokPerS != null ? { targetPrefillTokPerS: o.targetPrefillTokPerS } : {}),
    ...(o.assumedDecodeTokPerS != null ? { assumedDecodeTokPerS: o.assumedDecodeTokPerS } : {})
  }

  let lastPrompt = calibrationPrompt(nonce())
  if (o.targetPrefillTokPerS != null && o.limiter != null) {
    const target = o.targetPrefillTokPerS
    const limiter = o.limiter
    const min = limiter.periodUs > 0 ? 1_000 / limiter.periodUs : 0.01
    const clamp = (q: number): number => Math.min(o.maxQuotaCores, Math.max(min, q))
    let quota = clamp(target * u.cpuMsPerToken / 1000)
    result.maxQuotaCores = round(o.maxQuotaCores, 4)
    await limiter.setQuota(o.slot, quota)
    await limiter.add(o.slot, node.pid)
    for (let i = 0; i < CALIBRATION_MAX_ITERATIONS; i++) {
      lastPrompt = calibrationPrompt(nonce())
      const s = sample(await node.complete(lastPrompt, CALIBRATION_MAX_TOKENS, signal), quota)
      result.iterations.push(s)
      step(`quota ${quota.toFixed(3)} cores: prefill ${s.prefillTokPerS.toFixed(1)} tok/s (target ${target})`)
      const ratio = s.prefillTokPerS / target
      result.quotaCores = round(quota, 4)
      result.throttled = s
      if (Math.abs(ratio - 1) <= CALIBRATION_TOLERANCE) break
      const next = clamp(quota / ratio)
      if (next === quota) { result.quotaCapped = quota >= o.maxQuotaCores; break }
      quota = next
      await limiter.setQuota(o.slot, quota)
    }
    if (result.throttled != null && result.throttled.prefillTokPerS < target * (1 - CALIBRATION_TOLERANCE) && (result.quotaCores ?? 0) >= o.maxQuotaCores) result.quotaCapped = true
  }

  // the same prompt again: a local hit on this (possibly throttled) node
  const hit = await node.complete(lastPrompt, 2, signal)
  result.localHit = { ttftMs: round(hit.ttftMs), restoreMs: round(hit.timings.restoreMs ?? NaN), reusedTokens: hit.reusedTokens }
  const status = await node.status(signal)
  if (status.cache.chunks > 0) {
    result.chunkBytes = Math.round(status.cache.bytes / status.cache.chunks)
    result.bytesPerToken = round(result.chunkBytes / o.blockTokens, 1)
  }
  return result
}
