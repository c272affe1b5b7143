import type { QueryResult } from '../pipeline/pipeline.js'

/** The JSON object `run --json` and `query --json` print (a contract: fields are only ever added). */
export function resultJson (res: QueryResult): Record<string, unknown> {
  const { text, tokens, promptTokens, ttftMs, ttltMs, finishReason, cache, timings } = res
  return {
    text,
    tokens,
    promptTokens,
    ttftMs: round(ttftMs),
    ttltMs: round(ttltMs),
    finishReason,
    cache,
    timings: Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, round(v)]))
  }
}

export function printResult (res: QueryResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(resultJson(res))}\n`)
    return
  }
  // the text was streamed already; the summary goes to stderr so stdout stays the answer
  process.stdout.write('\n')
  const c = res.cache
  process.stderr.write(`[${res.promptTokens} prompt tokens, cache ${c.source}: ${c.reusedTokens} reused` +
    `${c.bytesFetched > 0 ? `, ${(c.bytesFetched / 1e6).toFixed(1)} MB from ${c.peers.length} peer(s)` : ''}` +
    ` | TTFT ${res.ttftMs.toFixed(0)} ms, TTLT ${res.ttltMs.toFixed(0)} ms]\n`)
}

function round (ms: number): number { return Math.round(ms * 100) / 100 }
