import { InvalidParametersError } from '@libp2p/interface'
import { DEFAULT_FETCH_CHUNKS_PER_REQUEST, DEFAULT_FETCH_TIMEOUT_MS } from './constants.js'
import type { Catalog } from '../catalog/index.js'
import type { RemoteChunkSource, RemoteFetchResult } from '../pipeline/pipeline.js'
import type { KvTransfer } from '../transfer/index.js'
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface'

export interface MeshFetcherInit {
  catalog: Pick<Catalog, 'peersWith' | 'recordFalsePositive'>
  /**
   * `catalog`: ask only peers whose catalog may hold a key (promptmesh). `broadcast`: no catalog, ask the
   * connected peers in turn (the baseline the testnet compares against).
   * @default 'catalog'
   */
  mode?: 'catalog' | 'broadcast'
  /** connected peers, for `broadcast` */
  peers?: () => PeerId[]
  transfer: Pick<KvTransfer, 'fetch' | 'maxChunksPerRequest'>
  /**
   * total deadline of one fetchContinuation
   * @default 10000
   */
  timeoutMs?: number
  /**
   * keys asked of one peer in one request (capped by the transfer's own limit)
   * @default 64
   */
  maxChunksPerRequest?: number
  /**
   * checks that a chunk that passed the transfer's SHA-256 check is the one its key names (the node
   * checks that its tokens chain to the key); returns why not, or undefined. A peer that sends one
   * is not asked again in this call and is reported to `policy`.
   */
  verify?: (keys: string[], index: number, bytes: Uint8Array) => string | undefined
  /** where peers sending chunks that fail `verify` are reported (the node's PeerGuard) */
  policy?: { report: (peer: PeerId, offence: 'fault', reason: string) => void }
  logger?: ComponentLogger
}

export interface MeshFetcherStats {
  /** fetchContinuation calls */
  fetches: number
  /** requests sent to peers */
  requests: number
  /** requests that delivered no chunk (every key NOT_FOUND/ERROR, or the request failed) */
  emptyRequests: number
  /** requests that ended in an error (verification, protocol, dial, timeout) */
  failedRequests: number
  /** keys a peer's catalog claimed but the peer did not have */
  falsePositives: number
  /** chunks and bytes returned to callers (the contiguous prefix) */
  chunks: number
  bytes: number
  /** fetches cut short by the deadline */
  deadlines: number
  /** chunks that passed the transfer's checks but not `verify` (not the chunk their key names) */
  rejectedChunks: number
}

/** One planned request: consecutive indices [start, end) asked of one peer. */
interface Run {
  peer: string
  start: number
  end: number
}

interface Got {
  bytes: Uint8Array
  peer: string
}

const EMPTY: RemoteFetchResult = { chunks: [], bytes: 0, peers: [], requests: 0, emptyRequests: 0 }

/**
 * The pipeline's view of the mesh: fetches the longest possible continuation keys[from..] from peers.
 *
 * Plan: each key's candidates are the peers whose catalog may hold it (a peer whose catalog says no is
 * never asked); the continuation ends at the first key nobody claims. Runs are cut greedily: at the
 * first unassigned key, the peer claiming the longest run from there gets it (ties: the peer with
 * fewer runs so far, so parallel runs spread over peers). All runs are fetched in parallel. Keys that
 * were not delivered (NOT_FOUND, which also counts a catalog false positive, ERROR, or a failed
 * request, after which that peer is not asked again in this call) are re-planned once with the
 * remaining candidates. The result is the delivered prefix.
 */
export class MeshFetcher implements RemoteChunkSource {
  private readonly catalog: MeshFetcherInit['catalog']
  private readonly transfer: MeshFetcherInit['transfer']
  private readonly timeoutMs: number
  private readonly maxChunksPerRequest: number
  private readonly log?: Logger
  private readonly mode: 'catalog' | 'broadcast'
  private readonly peers: () => PeerId[]
  private readonly verify?: MeshFetcherInit['verify']
  private readonly policy?: MeshFetcherInit['policy']
  /** bytes per ms of recent requests, per peer (exponentially weighted) */
  private readonly speed = new Map<string, number>()
  private readonly counters: MeshFetcherStats = {
    fetches: 0, requests: 0, emptyRequests: 0, failedRequests: 0, falsePositives: 0, chunks: 0, bytes: 0, deadlines: 0, rejectedChunks: 0
  }

  constructor (init: MeshFetcherInit) {
    this.catalog = init.catalog
    this.transfer = init.transfer
    this.timeoutMs = init.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS
    this.maxChunksPerRequest = Math.min(init.maxChunksPerRequest ?? DEFAULT_FETCH_CHUNKS_PER_REQUEST, init.transfer.maxChunksPerRequest)
    this.log = init.logger?.forComponent('promptmesh:network:fetcher')
    this.mode = init.mode ?? 'catalog'
    this.peers = init.peers ?? (() => [])
    this.verify = init.verify
    this.policy = init.policy
    if (!(this.timeoutMs > 0)) throw new InvalidParametersError('timeoutMs must be positive')
    if (!(this.maxChunksPerRequest >= 1)) throw new InvalidParametersError('maxChunksPerRequest must be ≥ 1')
  }

  stats (): MeshFetcherStats {
    return { ...this.counters }
  }

  /** How many of keys[from..] some peer claims, in a row (what a fetch could bring at best). */
  claimable (keys: string[], from: number): number {
    if (this.mode === 'broadcast') return this.peers().length > 0 ? keys.length - from : 0
    let n = 0
    while (from + n < keys.length && this.catalog.peersWith(keys[from + n] as string).length > 0) n++
    return n
  }

  /** Expected transfer speed in bytes per ms from the peers that would be asked (undefined: not measured yet). */
  throughput (keys: string[], from: number): number | undefined {
    const peers = this.mode === 'broadcast' ? this.peers() : (keys[from] != null ? this.catalog.peersWith(keys[from] as string) : [])
    const known = peers.map(p => this.speed.get(p.toString())).filter((v): v is number => v != null)
    return known.length === 0 ? undefined : Math.max(...known)
  }

  readonly fetchContinuation = async (keys: string[], from: number, options: FetchOptions = {}): Promise<RemoteFetchResult> => {
    options.signal?.throwIfAborted()
    this.counters.fetches++
    const wanted = keys.slice(from)
    const before = { requests: this.counters.requests, empty: this.counters.emptyRequests }

    // candidates per key, up to the first key nobody claims (broadcast: every connected peer, in turn)
    const peerIds = new Map<string, PeerId>()
    const candidates: string[][] = []
    const everyone = this.mode === 'broadcast' ? this.peers() : []
    for (const key of wanted) {
      const peers = this.mode === 'broadcast' ? everyone : this.catalog.peersWith(key)
      if (peers.length === 0) break
      candidates.push(peers.map((p) => {
        const id = p.toString()
        peerIds.set(id, p)
        return id
      }))
    }
    if (candidates.length === 0) return EMPTY

    const budget = options.deadlineMs != null && options.deadlineMs >= 0 ? Math.min(this.timeoutMs, options.deadlineMs) : this.timeoutMs
    const deadline = new Deadline(budget, this.timeoutMs)
    const credit = options.creditMsPerChunk ?? 0
    const onChunk = (index: number, bytes: Uint8Array): void => {
      if (credit > 0) deadline.extend(credit)
      try {
        options.onChunk?.(from + index, bytes)
      } catch (err) {
        this.log?.error('onChunk failed: %s', (err as Error).message)
      }
    }
    const signal = options.signal == null ? deadline.signal : AbortSignal.any([options.signal, deadline.signal])
    const got: Array<Got | undefined> = new Array(candidates.length).fill(undefined)
    const refused = candidates.map(() => new Set<string>())
    const failed = new Set<string>()

    // broadcast asks peer after peer; with catalogs one re-plan is enough
    const rounds = this.mode === 'broadcast' ? Math.max(1, everyone.length) : 2
    try {
      for (let round = 0; round < rounds && !signal.aborted; round++) {
        const runs = this.plan(candidates, got, refused, failed)
        if (runs.length === 0) break
        this.log?.trace('round %d: %s', round, runs.map((r) => `${r.peer.slice(-6)}[${r.start},${r.end})`).join(' '))
        await Promise.all(runs.map(async (run) => { await this.fetchRun(run, keys, from, peerIds, got, refused, failed, signal, onChunk) }))
      }
    } finally {
      deadline.clear()
    }
    if (options.signal?.aborted === true) throw options.signal.reason
    if (deadline.signal.aborted) this.counters.deadlines++

    const chunks: Uint8Array[] = []
    const peers = new Set<string>()
    let bytes = 0
    for (const g of got) {
      if (g == null) break
      chunks.push(g.bytes)
      peers.add(g.peer)
      bytes += g.bytes.byteLength
    }
    this.counters.chunks += chunks.length
    this.counters.bytes += bytes
    return { chunks, bytes, peers: [...peers], requests: this.counters.requests - before.requests, emptyRequests: this.counters.emptyRequests - before.empty }
  }

  /** Greedy longest-run plan over the keys still missing, up to the first one no usable peer claims. */
  private plan (candidates: string[][], got: Array<Got | undefined>, refused: Array<Set<string>>, failed: Set<string>): Run[] {
    const usable = (i: number, peer: string): boolean => !failed.has(peer) && !(refused[i] as Set<string>).has(peer)
    const runs: Run[] = []
    const load = new Map<string, number>()
    let i = 0
    while (i < candidates.length) {
      if (got[i] != null) { i++; continue }
      const here = (candidates[i] as string[]).filter((p) => usable(i, p))
      // nobody left for this key: the continuation cannot get past it
      if (here.length === 0) break
      let best: Run | undefined
      for (const peer of here) {
        let end = i + 1
        while (end < candidates.length && end - i < this.maxChunksPerRequest && got[end] == null &&
          (candidates[end] as string[]).includes(peer) && usable(end, peer)) end++
        const better = best == null || end > best.end ||
          (end === best.end && (load.get(peer) ?? 0) < (load.get(best.peer) ?? 0))
        if (better) best = { peer, start: i, end }
      }
      const run = best as Run
      runs.push(run)
      load.set(run.peer, (load.get(run.peer) ?? 0) + 1)
      i = run.end
    }
    return runs
  }

  private async fetchRun (run: Run, allKeys: string[], from: number, peerIds: Map<string, PeerId>, got: Array<Got | undefined>,
    refused: Array<Set<string>>, failed: Set<string>, signal: AbortSignal, onChunk: (index: number, bytes: Uint8Array) => void): Promise<void> {
    this.counters.requests++
    const keys = allKeys.slice(from + run.start, from + run.end)
    let delivered = 0
    let deliveredBytes = 0
    const started = Date.now()
    let i = run.start
    try {
      for await (const answer of this.transfer.fetch(peerIds.get(run.peer) as PeerId, keys, { signal })) {
        if (answer.status === 'found') {
          const problem = this.verify?.(allKeys, from + i, answer.bytes)
          if (problem != null) {
            // the bytes are what the peer declared, but not the chunk the key names: a lying or broken peer
            this.counters.rejectedChunks++
            this.counters.failedRequests++
            refused[i]?.add(run.peer)
            failed.add(run.peer)
            this.log?.('chunk %d from %s rejected: %s', from + i, run.peer, problem)
            const peerId = peerIds.get(run.peer)
            if (peerId != null) this.policy?.report(peerId, 'fault', `sent a chunk that is not the one its key names: ${problem}`)
            break
          }
          got[i] = { bytes: answer.bytes, peer: run.peer }
          onChunk(i, answer.bytes)
          delivered++
          deliveredBytes += answer.bytes.byteLength
        } else {
          refused[i]?.add(run.peer)
          if (answer.status === 'not-found' && this.mode === 'catalog') {
            this.counters.falsePositives++
            this.catalog.recordFalsePositive(run.peer)
          }
        }
        i++
      }
    } catch (err) {
      // verification failure, rejection, protocol error, dial failure or deadline: done with this peer
      this.counters.failedRequests++
      failed.add(run.peer)
      this.log?.('request to %s for keys %d..%d failed after %d: %s', run.peer, from + run.start, from + run.end - 1, delivered, (err as Error)?.message)
    }
    if (delivered === 0) this.counters.emptyRequests++
    // transfer speed including request latency: what the next fetch from this peer will likely see
    if (deliveredBytes > 0) {
      const sample = deliveredBytes / Math.max(1, Date.now() - started)
      const prev = this.speed.get(run.peer)
      this.speed.set(run.peer, prev == null ? sample : prev * 0.7 + sample * 0.3)
    }
  }
}

export interface FetchOptions {
  signal?: AbortSignal
  /** stop asking and return what arrived after this long (ms, fractions allowed) */
  deadlineMs?: number
  /**
   * every chunk that arrives moves the deadline this much later: a fetch may go on as long as it
   * keeps saving more time than it takes (the pipeline gives each chunk its compute time)
   */
  creditMsPerChunk?: number
  /** called with keys[index] as soon as it arrives and passed its checks (runs arrive in parallel: any order) */
  onChunk?: (index: number, bytes: Uint8Array) => void
}

/** A deadline that can be moved later, never beyond `maxMs` from its start. */
class Deadline {
  private readonly controller = new AbortController()
  private readonly started = Date.now()
  private timer?: ReturnType<typeof setTimeout>

  constructor (private allowanceMs: number, private readonly maxMs: number) {
    this.arm()
  }

  get signal (): AbortSignal { return this.controller.signal }

  extend (ms: number): void {
    if (this.controller.signal.aborted) return
    this.allowanceMs = Math.min(this.maxMs, this.allowanceMs + ms)
    this.arm()
  }

  clear (): void { clearTimeout(this.timer) }

  private arm (): void {
    clearTimeout(this.timer)
    // setTimeout wants whole milliseconds; a fractional budget (a compute-time estimate) is rounded up
    const left = Math.max(1, Math.ceil(this.started + this.allowanceMs - Date.now()))
    this.timer = setTimeout(() => { this.controller.abort(new DOMException('the fetch deadline passed', 'TimeoutError')) }, left)
  }
}
