/**
 * npm run bench:mesh [-- --mmlu DIR] [--subjects N] [--questions N] [--shape S] [--threads N]
 *
 * Two real nodes on loopback (libp2p TCP + noise + yamux). Measures, in one run: chunk-transfer
 * throughput, and TTFT for cold, local hit and remote hit on MMLU 5-shot prompts (synthetic ones without
 * --mmlu). A remote hit is compared with what it should cost: bytes moved ÷ measured throughput + the
 * local-hit TTFT. Prints a table and one JSON line.
 */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { defaultLogger } from '@libp2p/logger'
import { startNode } from '../src/node/node.js'
import { mean, median, pad, workload } from './common.js'
import type { MmluPrompt } from '../src/workload/mmlu.js'
import type { PromptmeshNode } from '../src/node/node.js'

const { values, bySubject, model, label } = await workload({ subjects: '3', questions: '3' }, { 'transfer-chunks': { type: 'string', default: '64' } })
const dirs = [await mkdtemp(join(tmpdir(), 'pm-bench-a-')), await mkdtemp(join(tmpdir(), 'pm-bench-b-'))]
// adaptive fetching off: this measures the remote path itself, even where computing would win
const common = { model, threads: Number(values.threads), contextSize: 4096, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, adaptiveFetch: false, logger: defaultLogger() }

async function until (what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function emptyStore (node: PromptmeshNode): Promise<void> {
  for (const k of [...node.local.store.keys()]) await node.local.store.delete(k)
  await node.local.engine.states.clear()
}

interface Row { subject: string, promptTokens: number, reused: number, bytes: number, coldMs: number, localMs: number, remoteMs: number, predictedMs: number, exact: boolean }
const rows: Row[] = []
let throughputMBps = 0
let transferBytes = 0

const a = await startNode({ ...common, dataDir: dirs[0] as string })
const b = await startNode({ ...common, dataDir: dirs[1] as string, peers: [a.mesh.getMultiaddrs()[0]?.toString() as string] })
try {
  const aId = a.mesh.peerId.toString()
  await until('the nodes to connect', () => b.mesh.connectedPeers().some(p => p.toString() === aId))
  await b.local.pipeline.run('warm up the engine', { maxTokens: 1, noCache: true })

  // node A answers the first question of each subject: it now holds each 5-shot prefix
  for (const qs of bySubject.values()) await a.local.pipeline.run((qs[0] as MmluPrompt).prompt, { maxTokens: 1 })
  await a.mesh.catalog.publish()
  await until('A\'s catalog to reach B', () => (b.mesh.catalog.peers().find(p => p.peerId === aId)?.entries ?? 0) >= a.local.store.count)

  // raw transfer throughput: the chunks A holds, fetched by B in requests of up to 32
  const keys = [...a.local.store.keys()].slice(0, Number(values['transfer-chunks']))
  const speeds: number[] = []
  for (let rep = 0; rep < 3; rep++) {
    let bytes = 0
    const t = performance.now()
    for (let i = 0; i < keys.length; i += 32) {
      for await (const c of b.mesh.transfer.fetch(a.mesh.peerId, keys.slice(i, i + 32))) if (c.status === 'found') bytes += c.bytes.length
    }
    speeds.push(bytes / 1e6 / ((performance.now() - t) / 1000))
    transferBytes = bytes
  }
  throughputMBps = median(speeds)

  for (const [subject, qs] of bySubject) {
    for (const q of qs.slice(1)) {
      const tokens = b.local.engine.tokenize(q.prompt)
      const cold = await b.local.pipeline.runTokens(tokens, { maxTokens: 4, noCache: true })
      await emptyStore(b)
      const remote = await b.local.pipeline.runTokens(tokens, { maxTokens: 4 })
      // the same prefix again, now from B's own store (assembled anew, not the kept tmpfs state)
      await b.local.engine.states.clear()
      const local = await b.local.pipeline.runTokens(tokens, { maxTokens: 4 })
      const bytes = remote.cache.bytesFetched
      rows.push({
        subject,
        promptTokens: tokens.length,
        reused: remote.cache.reusedTokens,
        bytes,
        coldMs: cold.ttftMs,
        localMs: local.ttftMs,
        remoteMs: remote.ttftMs,
        predictedMs: bytes / (throughputMBps * 1e6) * 1000 + local.ttftMs,
        exact: remote.cache.source === 'remote' && cold.tokens.join() === remote.tokens.join() && cold.tokens.join() === local.tokens.join()
      })
    }
  }
} finally {
  await b.stop()
  await a.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
}

console.log(`mesh benchmark: 2 nodes on loopback, ${label}`)
console.log(`chunk transfer: ${throughputMBps.toFixed(0)} MB/s (median of 3 × ${(transferBytes / 1e6).toFixed(1)} MB)`)
console.log(`${'subject'.padEnd(28)}${pad('prompt', 7)}${pad('reused', 7)}${pad('MB', 6)}${pad('cold', 8)}${pad('local', 8)}${pad('remote', 8)}${pad('predicted', 10)}${pad('rem/pred', 9)} exact`)
for (const r of rows) {
  console.log(`${r.subject.slice(0, 27).padEnd(28)}${pad(r.promptTokens, 7)}${pad(r.reused, 7)}${pad((r.bytes / 1e6).toFixed(1), 6)}${pad(r.coldMs.toFixed(0), 8)}${pad(r.localMs.toFixed(0), 8)}${pad(r.remoteMs.toFixed(0), 8)}${pad(r.predictedMs.toFixed(0), 10)}${pad((r.remoteMs / r.predictedMs).toFixed(2), 9)} ${String(r.exact)}`)
}
const summary = {
  bench: 'mesh',
  workload: values.mmlu != null ? 'mmlu-5shot' : 'synthetic-5shot',
  model: values.model ?? values.shape,
  queries: rows.length,
  transferMBps: +throughputMBps.toFixed(1),
  coldTtftMs: +mean(rows.map(r => r.coldMs)).toFixed(2),
  localHitTtftMs: +mean(rows.map(r => r.localMs)).toFixed(2),
  remoteHitTtftMs: +mean(rows.map(r => r.remoteMs)).toFixed(2),
  predictedRemoteMs: +mean(rows.map(r => r.predictedMs)).toFixed(2),
  remoteOverPredicted: +(mean(rows.map(r => r.remoteMs)) / mean(rows.map(r => r.predictedMs))).toFixed(4),
  meanBytesFetched: Math.round(mean(rows.map(r => r.bytes))),
  allExact: rows.every(r => r.exact)
}
console.log(`mean TTFT: cold ${summary.coldTtftMs} ms, local hit ${summary.localHitTtftMs} ms, remote hit ${summary.remoteHitTtftMs} ms = ${summary.remoteOverPredicted}x predicted`)
console.log(JSON.stringify(summary))
