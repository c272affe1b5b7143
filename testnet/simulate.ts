/**
 * --simulate N: a discrete-event stand-in for meshes too large for one machine (10 to 500+ nodes).
 * No model and no network run. Each node is a chunk store (a set of chained block keys) and, under
 * `catalog`, a real Bloom filter (src/catalog/bloom.ts, the catalog's own shape, seed and publishing
 * rules) whose published snapshots the other nodes consult, so false positives are real ones. The
 * fetch plan mirrors the node's (longest claimed run per peer, parallel requests, re-plan of what was
 * not delivered; broadcast asks peer after peer). Time comes from a calibration on the real model:
 * prefill and decode rates, chunk size and restore cost; links move bytes at the profile's rate.
 *
 * Tokens are approximated from characters (the calibration's characters per token) and blocks are cut
 * from the text, so prompts that share a prefix share blocks as they would with real tokens.
 */
import { createHash } from 'node:crypto'
import { shapeFor, createFilter, filterBytes } from '../src/catalog/bloom.js'
import { CATALOG_SEED, CHANGE_DEBOUNCE_MS, DEFAULT_CHANGE_THRESHOLD, DEFAULT_PUBLISH_INTERVAL_MS } from '../src/catalog/constants.js'
import { FINAL_EVAL_TOKENS, reusableBlocks } from '../src/cache/keys.js'
import { SIM_CATALOG_HEADER_BYTES, SIM_GOSSIP_DELAY_MS, SIM_QUERY_GAP_MS } from './constants.js'
import { round, summarize } from './summary.js'
import type { KeyFilter } from '../src/catalog/bloom.js'
import type { Strategy } from './constants.js'
import type { MeshTotals, QueryRecord, Summary } from './summary.js'
import type { WorkloadQuery } from './workload.js'

/** Chunks asked of one peer in one request (the fetcher's default). */
const MAX_CHUNKS_PER_REQUEST = 64
/** Catalog fetches re-plan once; broadcast goes on peer after peer. */
const CATALOG_ROUNDS = 2
/** A link without a limit: veth + noise encryption, roughly. */
const UNLIMITED_MBIT = 2_000
/** TCP goodput over a tbf-limited link (20mbit gave 2.4 MB/s here). */
const GOODPUT = 0.95

export interface SimTimings {
  prefillTokPerS: number
  decodeTokPerS: number
  /** bytes of KV state per prompt token */
  bytesPerToken: number
  charsPerToken: number
  blockTokens: number
  /** assembling and loading a cached prefix, per block */
  restoreMsPerBlock: number
}

export interface SimOptions {
  nodes: number
  queries: WorkloadQuery[]
  strategies: Strategy[]
  timings: SimTimings
  /** undefined: no limit */
  linkMbit?: number
  requestOverheadMs: number
  maxTokens: number
  /** adaptive fetching: compute instead when the transfer is predicted to be slower @default true */
  adaptive?: boolean
  seed?: number
}

export interface SimResult {
  records: QueryRecord[]
  mesh: Partial<Record<Strategy, MeshTotals>>
  summary: Summary
  /** simulated time span per strategy, ms */
  spanMs: Partial<Record<Strategy, number>>
}

/** A catalog as published: what the other nodes test keys against. */
interface Snapshot {
  bits: number
  hashes: number
  /** bits and hashes in one number, to group snapshots of the same shape */
  shape: number
  bytes: Uint8Array
}

interface SimNode {
  store: Set<string>
  /** catalog only */
  filter?: KeyFilter
  capacity: number
  changes: number
  entriesAtPublish: number
  view?: Snapshot
  pendingPublishAt: number
  nextPeriodicAt: number
  /** broadcast: the order in which this node asks its peers */
  order?: number[]
}

/** xorshift32: deterministic peer orders and periodic phases. */
function rng (seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 0x1_0000_0000
  }
}

/** The key of a prompt's tail (the rest after its whole blocks, as the node keys it but over characters). */
function tailKeyOf (keys: string[], text: string, from: number): string {
  return createHash('sha256').update(keys[keys.length - 1] ?? 'promptmesh-sim').update('tail').update(text.slice(from)).digest('hex')
}

/** Chained keys over blocks of `blockChars` characters, as the node chains them over token blocks. */
function blockKeys (text: string, blockChars: number): string[] {
  const keys: string[] = []
  let prev = 'promptmesh-sim'
  for (let at = 0; at + blockChars <= text.length; at += blockChars) {
    prev = createHash('sha256').update(prev).update(text.slice(at, at + blockChars)).digest('hex')
    keys.push(prev)
  }
  return keys
}

/** The Bloom filter index positions of a key for one filter shape (computed once, tested on many snapshots). */
class IndexCache {
  private readonly cache = new Map<string, number[]>()
  private readonly reps = new Map<string, KeyFilter>()

  indexes (key: string, bits: number, hashes: number): number[] {
    const id = `${bits}/${hashes}/${key}`
    let idx = this.cache.get(id)
    if (idx == null) {
      let rep = this.reps.get(`${bits}/${hashes}`)
      if (rep == null) {
        rep = createFilter({ bits, hashes, seed: CATALOG_SEED })
        this.reps.set(`${bits}/${hashes}`, rep)
      }
      idx = rep._hashing.getIndexes(key, rep.size, hashes, rep.seed)
      this.cache.set(id, idx)
    }
    return idx
  }

  /** Which of `peers`' snapshots may hold `key` (index positions computed once per filter shape). */
  holders (key: string, snapshots: Array<Snapshot | undefined>, skip: number): number[] {
    const byShape = new Map<number, number[]>()
    const out: number[] = []
    for (let p = 0; p < snapshots.length; p++) {
      const snap = snapshots[p]
      if (p === skip || snap == null) continue
      let idx = byShape.get(snap.shape)
      if (idx == null) {
        idx = this.indexes(key, snap.bits, snap.hashes)
        byShape.set(snap.shape, idx)
      }
      let all = true
      for (const i of idx) {
        if (((snap.bytes[i >> 3] as number) & (1 << (i & 7))) === 0) { all = false; break }
      }
      if (all) out.push(p)
    }
    return out
  }
}

interface Run { peer: number, start: number, end: number }

/**
 * The fetcher's greedy plan: at the first missing key, the peer claiming the longest run gets it (ties:
 * fewer runs so far). A peer that reaches the longest possible run with no run yet is taken at once:
 * nobody can beat it (this keeps broadcast over hundreds of peers cheap).
 */
function plan (candidates: Array<Set<number>>, order: number[][], got: boolean[], refused: Array<Set<number>>): Run[] {
  const runs: Run[] = []
  const load = new Map<number, number>()
  let i = 0
  while (i < candidates.length) {
    if (got[i] === true) { i++; continue }
    let limit = i + 1
    while (limit < candidates.length && limit - i < MAX_CHUNKS_PER_REQUEST && got[limit] !== true) limit++
    let best: Run | undefined
    for (const peer of order[i] as number[]) {
      if ((refused[i] as Set<number>).has(peer)) continue
      let end = i + 1
      while (end < limit && (candidates[end] as Set<number>).has(peer) && !(refused[end] as Set<number>).has(peer)) end++
      if (best == null || end > best.end || (end === best.end && (load.get(peer) ?? 0) < (load.get(best.peer) ?? 0))) best = { peer, start: i, end }
      if (end === limit && (load.get(peer) ?? 0) === 0) break
    }
    if (best == null) break
    runs.push(best)
    load.set(best.peer, (load.get(best.peer) ?? 0) + 1)
    i = best.end
  }
  return runs
}

export function simulate (o: SimOptions): SimResult {
  const { nodes: N, timings: t, maxTokens } = o
  const B = t.blockTokens
  const blockChars = Math.max(1, Math.round(B * t.charsPerToken))
  const chunkBytes = t.bytesPerToken * B
  const linkBytesPerMs = ((o.linkMbit ?? UNLIMITED_MBIT) * 1e6 / 8 * GOODPUT) / 1000
  const computeMs = (tokens: number): number => tokens / t.prefillTokPerS * 1000
  const adaptive = o.adaptive ?? true
  const index = new IndexCache()
  const prompts = o.queries.map(q => {
    const tokens = Math.max(1, Math.ceil(q.prompt.length / t.charsPerToken))
    return { q, tokens, keys: blockKeys(q.prompt, blockChars) }
  })
  const records: QueryRecord[] = []
  const mesh: Partial<Record<Strategy, MeshTotals>> = {}
  const spanMs: Partial<Record<Strategy, number>> = {}

  for (const strategy of o.strategies) {
    const random = rng((o.seed ?? 1) * 7919 + N)
    const usesCatalog = strategy === 'catalog'
    const nodes: SimNode[] = Array.from({ length: N }, () => ({
      store: new Set<string>(),
      capacity: 0,
      changes: 0,
      entriesAtPublish: 0,
      pendingPublishAt: Infinity,
      nextPeriodicAt: random() * DEFAULT_PUBLISH_INTERVAL_MS
    }))
    const totals: MeshTotals = { fetchRequests: 0, fetchRequestsWasted: 0, kvRequestsServed: 0, kvBytesServed: 0, catalogPublished: 0, catalogReceived: 0, catalogFalsePositives: 0, catalogBytes: 0 }
    if (strategy === 'broadcast') {
      for (const [i, n] of nodes.entries()) {
        const order = [...Array(N).keys()].filter(p => p !== i)
        for (let k = order.length - 1; k > 0; k--) { const j = Math.floor(random() * (k + 1)); [order[k], order[j]] = [order[j] as number, order[k] as number] }
        n.order = order
      }
    }
    const publish = (n: SimNode): void => {
      if (n.filter == null) return
      // a store that outgrew its filter is rebuilt with headroom, as the catalog does
      if (n.store.size > n.capacity) {
        const shape = shapeFor(n.store.size, CATALOG_SEED)
        n.filter = createFilter(shape)
        for (const k of n.store) n.filter.add(k)
        n.capacity = shape.capacity
      }
      const bytes = filterBytes(n.filter)
      n.view = { bits: n.filter.size, hashes: n.filter._nbHashes, shape: n.filter.size * 64 + n.filter._nbHashes, bytes: Uint8Array.from(bytes) }
      n.changes = 0
      n.entriesAtPublish = n.store.size
      totals.catalogPublished++
      totals.catalogReceived += N - 1
      totals.catalogBytes = (totals.catalogBytes ?? 0) + (bytes.byteLength + SIM_CATALOG_HEADER_BYTES) * (N - 1)
    }
    /** Catalogs published up to `now` (change-triggered, then periodic), as the other nodes hold them. */
    const advance = (now: number): void => {
      if (!usesCatalog) return
      for (const n of nodes) {
        if (n.pendingPublishAt + SIM_GOSSIP_DELAY_MS <= now) { n.pendingPublishAt = Infinity; publish(n) }
        while (n.nextPeriodicAt + SIM_GOSSIP_DELAY_MS <= now) {
          n.nextPeriodicAt += DEFAULT_PUBLISH_INTERVAL_MS
          publish(n)
        }
      }
    }
    if (usesCatalog) {
      for (const n of nodes) {
        const shape = shapeFor(0, CATALOG_SEED)
        n.filter = createFilter(shape)
        n.capacity = shape.capacity
      }
    }

    let now = 0
    for (const { q, tokens, keys } of prompts) {
      now += SIM_QUERY_GAP_MS
      advance(now)
      const x = q.node
      const me = nodes[x] as SimNode
      // whole blocks, then the tail, leaving the last tokens to evaluate (as the pipeline does)
      const reusable = Math.min(keys.length, reusableBlocks(tokens, B))
      const tailTokens = tokens - FINAL_EVAL_TOKENS - reusable * B
      const chain = keys.slice(0, reusable)
      if (tailTokens > 0) chain.push(tailKeyOf(chain, q.prompt, reusable * blockChars))
      const covered = (n: number): number => n > reusable ? tokens - FINAL_EVAL_TOKENS : n * B
      const bytesOf = (j: number): number => j < reusable ? chunkBytes : tailTokens * t.bytesPerToken
      const record: QueryRecord = {
        strategy, index: q.index, node: x, ...(q.subject != null ? { subject: q.subject } : {}), ...(q.round > 0 ? { round: q.round } : {}),
        promptTokens: tokens, ttftMs: 0, ttltMs: 0, reusedTokens: 0, localTokens: 0, remoteTokens: 0, source: 'none',
        bytesFetched: 0, peers: 0, requests: 0, emptyRequests: 0, requestsFrom: 'simulated', tokens: [], timings: {}
      }
      let local = 0
      if (strategy !== 'none') while (local < chain.length && me.store.has(chain[local] as string)) local++

      // peers: who may hold keys[local..], up to the first key nobody claims
      let fetched = 0
      let fetchMs = 0
      const servedBy = new Set<number>()
      if ((strategy === 'catalog' || strategy === 'broadcast') && local < chain.length) {
        const order: number[][] = []
        const candidates: Array<Set<number>> = []
        const everyone = strategy === 'broadcast' ? new Set(me.order) : undefined
        const views = usesCatalog ? nodes.map(n => n.view) : []
        for (let j = local; j < chain.length; j++) {
          const peers = strategy === 'broadcast' ? me.order as number[] : index.holders(chain[j] as string, views, x)
          if (peers.length === 0) break
          order.push(peers)
          candidates.push(everyone ?? new Set(peers))
        }
        const claimable = candidates.length
        const budgetMs = computeMs(covered(local + claimable) - covered(local))
        let claimableBytes = 0
        for (let j = local; j < local + claimable; j++) claimableBytes += bytesOf(j)
        const predictedMs = o.requestOverheadMs + claimableBytes / linkBytesPerMs
        if (claimable > 0 && adaptive && predictedMs >= budgetMs) {
          record.fetchSkipped = true
        } else if (claimable > 0) {
          const got: boolean[] = new Array(claimable).fill(false)
          const refused = candidates.map(() => new Set<number>())
          const rounds = strategy === 'broadcast' ? N - 1 : CATALOG_ROUNDS
          for (let round = 0; round < rounds && fetchMs < budgetMs; round++) {
            const runs = plan(candidates, order, got, refused)
            if (runs.length === 0) break
            // runs go out in parallel; the requester's link carries all the bytes
            const found: Array<{ i: number, peer: number }> = []
            for (const run of runs) {
              record.requests++
              let delivered = 0
              for (let i = run.start; i < run.end; i++) {
                if ((nodes[run.peer] as SimNode).store.has(chain[local + i] as string)) {
                  found.push({ i, peer: run.peer })
                  delivered++
                } else {
                  (refused[i] as Set<number>).add(run.peer)
                  if (usesCatalog) totals.catalogFalsePositives++
                }
              }
              if (delivered === 0) record.emptyRequests++
            }
            found.sort((a, b) => a.i - b.i)
            const roundMs = o.requestOverheadMs + found.reduce((a, f) => a + bytesOf(local + f.i), 0) / linkBytesPerMs
            // the deadline cuts a round short: only what arrived by then counts
            const fits = fetchMs + roundMs <= budgetMs ? found.length : Math.max(0, Math.floor((budgetMs - fetchMs - o.requestOverheadMs) * linkBytesPerMs / chunkBytes))
            for (const f of found.slice(0, fits)) { got[f.i] = true }
            totals.kvBytesServed += found.slice(0, fits).reduce((a, f) => a + bytesOf(local + f.i), 0)
            fetchMs = Math.min(budgetMs, fetchMs + roundMs)
            if (fits < found.length) break
          }
          while (fetched < claimable && got[fetched] === true) fetched++
          // which peers served the delivered prefix (for the record)
          for (let i = 0; i < fetched; i++) {
            for (const p of order[i] as number[]) if ((nodes[p] as SimNode).store.has(chain[local + i] as string)) { servedBy.add(p); break }
          }
        }
      }
      totals.fetchRequests += record.requests
      totals.fetchRequestsWasted += record.emptyRequests
      totals.kvRequestsServed += record.requests

      const restored = local + fetched
      const restoreMs = restored * t.restoreMsPerBlock
      const prefillMs = computeMs(tokens - covered(restored))
      record.reusedTokens = covered(restored)
      record.localTokens = covered(local)
      record.remoteTokens = covered(restored) - covered(local)
      for (let j = local; j < restored; j++) record.bytesFetched += bytesOf(j)
      record.peers = servedBy.size
      record.source = restored === 0 ? 'none' : fetched === 0 ? 'local' : local === 0 ? 'remote' : 'mixed'
      record.ttftMs = round(fetchMs + restoreMs + prefillMs)
      record.ttltMs = round(record.ttftMs + (maxTokens - 1) / t.decodeTokPerS * 1000)
      record.timings = { fetchMs: round(fetchMs), restoreMs: round(restoreMs), prefillMs: round(prefillMs) }
      records.push(record)
      now += record.ttltMs

      // what the node keeps: every full block of the prompt and its tail (computed or fetched)
      if (strategy !== 'none') {
        let added = 0
        for (const k of [...keys.slice(0, Math.floor(tokens / B)), ...chain.slice(reusable)]) {
          if (me.store.has(k)) continue
          me.store.add(k)
          me.filter?.add(k)
          added++
        }
        if (usesCatalog && added > 0) {
          me.changes += added
          if (me.changes >= Math.max(1, DEFAULT_CHANGE_THRESHOLD * me.entriesAtPublish)) me.pendingPublishAt = Math.min(me.pendingPublishAt, now + CHANGE_DEBOUNCE_MS)
        }
      }
    }
    advance(now)
    spanMs[strategy] = now
    if (usesCatalog) totals.catalogBytesPerNodePerS = round((totals.catalogBytes ?? 0) / N / Math.max(1, now / 1000), 1)
    else delete totals.catalogBytes
    mesh[strategy] = totals
  }
  return { records, mesh, summary: summarize(records, o.strategies, mesh, { compareTokens: false }), spanMs }
}
