/**
 * npm run bench:mesh [-- --mmlu DIR] [--subjects N] [--questions N] [--shape S] [--threads N]
 *
 * Two real nodes on loopback (libp2p TCP + noise + yamux), A in a child process, B in this one. Measures, in one run: chunk-transfer
 * throughput, and TTFT for cold, local hit and remote hit on MMLU 5-shot prompts (synthetic ones without
 * --mmlu). A remote hit is compared with what it should cost: bytes moved ÷ measured throughput + the
 * local-hit TTFT. Prints a table and one JSON line.
 */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { defaultLogger } from '@libp2p/logger'
import { blockKeys } from '../src/cache/keys.js'
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

interface ProcessNode { peerId: string, address: string, complete: (prompt: string) => Promise<void>, stop: () => Promise<void> }

/** `promptmesh start` in a child process; resolves once it prints its addresses. */
async function startProcessNode (args: string[]): Promise<ProcessNode> {
  const bin = fileURLToPath(new URL('../../bin/promptmesh.js', import.meta.url))
  const child = spawn(process.execPath, [bin, 'start', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  await new Promise<void>((resolve, reject) => {
    child.once('exit', code => reject(new Error(`node A exited with ${code}`)))
    createInterface({ input: child.stdout }).on('line', line => { lines.push(line); if (line.startsWith('api ')) resolve() })
  })
  const address = (lines.find(l => /^listening/.test(l)) ?? '').replace(/^listening\s+/, '').trim()
  const api = (lines.find(l => /^api /.test(l)) ?? '').replace(/^api\s+/, '').trim()
  return {
    peerId: address.split('/p2p/')[1] ?? '',
    address,
    complete: async (prompt) => {
      const res = await fetch(`${api}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: 1 }) })
      if (!res.ok) throw new Error(`node A answered ${res.status}`)
    },
    stop: async () => {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
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

// node A is its own process, as a second device would be: both ends of a transfer do not share one thread
const a = await startProcessNode(['--model', model, '--data-dir', dirs[0] as string, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--threads', values.threads ?? '2'])
const b = await startNode({ ...common, dataDir: dirs[1] as string, peers: [a.address] })
try {
  const aId = a.peerId
  await until('the nodes to connect', () => b.mesh.connectedPeers().some(p => p.toString() === aId))
  await b.local.pipeline.run('warm up the engine', { maxTokens: 1, noCache: true })

  // node A answers the first question of each subject: it now holds each 5-shot prefix
  const held: string[] = []
  for (const qs of bySubject.values()) {
    const prompt = (qs[0] as MmluPrompt).prompt
    await a.complete(prompt)
    held.push(...blockKeys(b.local.engine.fingerprint, b.local.engine.tokenize(prompt), b.local.pipeline.blockTokens))
  }
  await until('A\'s catalog to reach B', () => (b.mesh.catalog.peers().find(p => p.peerId === aId)?.entries ?? 0) >= held.length)

  // raw transfer throughput: chunks A holds, fetched by B in requests of up to 32
  const keys = held.slice(0, Number(values['transfer-chunks']))
  const aPeer = b.mesh.connectedPeers().find(p => p.toString() === aId)
  if (aPeer == null) throw new Error('A is not connected')
  const speeds: number[] = []
  for (let rep = 0; rep < 3; rep++) {
    let bytes = 0
    const t = performance.now()
    for (let i = 0; i < keys.length; i += 32) {
      for await (const c of b.mesh.transfer.fetch(aPeer, keys.slice(i, i + 32))) if (c.status === 'found') bytes += c.bytes.length
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
      // the same prefix again, now from B's own store (assembled anew, not the kept tmpfs state):
      // keep only the blocks the remote hit reused, so that both hits restore the same prefix
      const reusedKeys = new Set(blockKeys(b.local.engine.fingerprint, tokens, b.local.pipeline.blockTokens).slice(0, remote.cache.reusedTokens / b.local.pipeline.blockTokens))
      for (const k of [...b.local.store.keys()]) if (!reusedKeys.has(k)) await b.local.store.delete(k)
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
