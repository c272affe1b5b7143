/**
 * npm run bench:engine [-- --mmlu DIR] [--subjects N] [--questions N] [--shape S] [--threads N]
 *
 * TTFT on one node: cold (no cache) vs a local hit on the shared 5-shot prefix, and the floor a hit can
 * reach: evaluating only the unmatched suffix in a warm context (prefix already in memory, as llama.cpp's
 * server does). Prints a table and one JSON line; all ratios come from this run.
 */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { defaultLogger } from '@libp2p/logger'
import { openLocalNode } from '../src/node/local.js'
import { mean, median, pad, workload } from './common.js'
import type { MmluPrompt } from '../src/workload/mmlu.js'

const { values, bySubject, model, label } = await workload({ subjects: '4', questions: '4' }, { 'block-tokens': { type: 'string', default: '32' } })
const cacheDir = await mkdtemp(join(tmpdir(), 'pm-bench-engine-'))
const node = await openLocalNode({ model, cacheDir, threads: Number(values.threads), blockTokens: Number(values['block-tokens']), contextSize: 4096, logger: defaultLogger() })
const { engine, pipeline } = node

interface Row { subject: string, promptTokens: number, reusedTokens: number, coldMs: number, hitMs: number, suffixMs: number, repeatMs: number, exact: boolean, lookupMs: number, restoreMs: number }
const rows: Row[] = []

try {
  // one warm-up query so that lazy allocations do not land in the first measurement
  await pipeline.run('warm up the engine', { maxTokens: 1, noCache: true })
  for (const [subject, qs] of bySubject) {
    // the first question of a subject fills the cache with the shared 5-shot prefix
    await pipeline.run((qs[0] as MmluPrompt).prompt, { maxTokens: 1 })
    for (const q of qs.slice(1)) {
      const tokens = engine.tokenize(q.prompt)
      const cold = await pipeline.runTokens(tokens, { maxTokens: 4, noCache: true })
      const hit = await pipeline.runTokens(tokens, { maxTokens: 4 })
      // the floor: same prefix already in memory, evaluate only the suffix and sample one token
      const reused = hit.cache.reusedTokens
      const suffixMs = await engine.lock(async () => {
        await engine.reset()
        await engine.evaluate(tokens.slice(0, reused))
        const t = performance.now()
        await engine.generate(tokens.slice(reused), { maxTokens: 1 })
        return performance.now() - t
      })
      // the very same prompt again: every whole block is cached now (a repeated question)
      const repeat = await pipeline.runTokens(tokens, { maxTokens: 4 })
      rows.push({ subject, promptTokens: tokens.length, reusedTokens: reused, coldMs: cold.ttftMs, hitMs: hit.ttftMs, suffixMs, repeatMs: repeat.ttftMs, exact: cold.tokens.join() === hit.tokens.join() && cold.tokens.join() === repeat.tokens.join(), lookupMs: hit.timings.lookupMs, restoreMs: hit.timings.restoreMs })
    }
  }
} finally {
  await node.close()
  await rm(cacheDir, { recursive: true, force: true })
}

console.log(`engine benchmark: ${label}`)
console.log(`${'subject'.padEnd(34)}${pad('prompt', 7)}${pad('reused', 7)}${pad('cold ms', 9)}${pad('hit ms', 8)}${pad('suffix ms', 10)}${pad('hit/cold', 9)}${pad('hit/sfx', 8)}${pad('restore', 8)}${pad('repeat', 8)} exact`)
for (const r of rows) {
  console.log(`${r.subject.slice(0, 33).padEnd(34)}${pad(r.promptTokens, 7)}${pad(r.reusedTokens, 7)}${pad(r.coldMs.toFixed(1), 9)}${pad(r.hitMs.toFixed(1), 8)}${pad(r.suffixMs.toFixed(1), 10)}${pad((r.hitMs / r.coldMs).toFixed(3), 9)}${pad((r.hitMs / r.suffixMs).toFixed(2), 8)}${pad(r.restoreMs.toFixed(1), 8)}${pad(r.repeatMs.toFixed(1), 8)} ${String(r.exact)}`)
}
const summary = {
  bench: 'engine',
  workload: values.mmlu != null ? 'mmlu-5shot' : 'synthetic-5shot',
  model: values.model ?? values.shape,
  queries: rows.length,
  meanPromptTokens: Math.round(mean(rows.map(r => r.promptTokens))),
  meanReusedTokens: Math.round(mean(rows.map(r => r.reusedTokens))),
  coldTtftMs: +mean(rows.map(r => r.coldMs)).toFixed(2),
  hitTtftMs: +mean(rows.map(r => r.hitMs)).toFixed(2),
  suffixOnlyMs: +mean(rows.map(r => r.suffixMs)).toFixed(2),
  hitLookupMs: +mean(rows.map(r => r.lookupMs)).toFixed(2),
  hitRestoreMs: +mean(rows.map(r => r.restoreMs)).toFixed(2),
  repeatTtftMs: +mean(rows.map(r => r.repeatMs)).toFixed(2),
  hitOverCold: +(mean(rows.map(r => r.hitMs)) / mean(rows.map(r => r.coldMs))).toFixed(4),
  hitOverSuffixOnly: +(mean(rows.map(r => r.hitMs)) / mean(rows.map(r => r.suffixMs))).toFixed(4),
  repeatOverCold: +(mean(rows.map(r => r.repeatMs)) / mean(rows.map(r => r.coldMs))).toFixed(4),
  medianHitOverCold: +median(rows.map(r => r.hitMs / r.coldMs)).toFixed(4),
  medianHitOverSuffixOnly: +median(rows.map(r => r.hitMs / r.suffixMs)).toFixed(4),
  medianRepeatOverCold: +median(rows.map(r => r.repeatMs / r.coldMs)).toFixed(4),
  suffixOnlyOverCold: +(mean(rows.map(r => r.suffixMs)) / mean(rows.map(r => r.coldMs))).toFixed(4),
  allExact: rows.every(r => r.exact)
}
console.log(`mean: cold ${summary.coldTtftMs} ms, prefix hit ${summary.hitTtftMs} ms (${summary.hitOverCold}x cold), suffix-only floor ${summary.suffixOnlyMs} ms (${summary.suffixOnlyOverCold}x cold; hit = ${summary.hitOverSuffixOnly}x floor), repeated prompt ${summary.repeatTtftMs} ms (${summary.repeatOverCold}x cold)`)
console.log(`median per query: hit/cold ${summary.medianHitOverCold}, hit/floor ${summary.medianHitOverSuffixOnly}, repeat/cold ${summary.medianRepeatOverCold}`)
console.log(JSON.stringify(summary))
