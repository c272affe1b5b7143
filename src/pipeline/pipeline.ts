import { EventEmitter } from 'node:events'
import { rm } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { DEFAULT_BLOCK_TOKENS } from '../cache/constants.js'
import { assembleState, chunkBytesFor, parseChunk, parseState, StateAssembly } from '../engine/state-codec.js'
import { DEFAULT_MAX_TOKENS } from '../engine/constants.js'
import { readWhole } from '../file-io.js'
import { idleCollector } from '../idle-gc.js'
import { Arena } from './arena.js'
import { ReuseChain } from './chain.js'
import { ChunkCutter } from './cutter.js'
import { gcPauses } from './gc-pauses.js'
import { BlockTooLongError, PromptTooLongError } from './errors.js'
import type { ChunkStore } from '../cache/chunk-store.js'
import type { Engine } from '../engine/engine.js'
import type { Span } from './chain.js'
import type { ParsedChunk } from '../engine/state-codec.js'
import type { Logger } from '@libp2p/interface'

export type CacheSource = 'none' | 'local' | 'remote' | 'mixed'

export interface CacheReport {
  source: CacheSource
  /** prompt tokens restored from chunks instead of evaluated */
  reusedTokens: number
  /** bytes of chunks fetched from peers for this query */
  bytesFetched: number
  /** peers that served chunks for this query */
  peers: string[]
  /** tokens restored from the local store / from peers */
  localTokens: number
  remoteTokens: number
  /** new chunks written to the store by this query */
  storedChunks: number
  /** chunk requests sent to peers, and those that found nothing */
  requests: number
  emptyRequests: number
  /** peers might have had more, but computing was expected to be faster (adaptive fetching) */
  fetchSkipped: boolean
}

export interface QueryResult {
  text: string
  tokens: number[]
  promptTokens: number
  /** from the moment the prompt was handed to the pipeline to the first generated token */
  ttftMs: number
  /** ... to the last generated token */
  ttltMs: number
  finishReason: 'length' | 'stop'
  cache: CacheReport
  /** where the time before the first token went, in ms */
  timings: QueryTimings
}

export interface QueryTimings {
  lookupMs: number
  fetchMs: number
  /**
   * CPU time of the whole process (every thread) during the fetch and during restoring: under a CPU quota,
   * a step whose wall time far exceeds its CPU time waited for quota that something else used
   */
  fetchCpuMs?: number
  restoreCpuMs?: number
  /**
   * within the fetch, from its start: when the first and the last fetched chunk arrived, and when the
   * local chunks had been read and placed (tells the link's latency and rate from the time around them)
   */
  firstChunkMs?: number
  lastChunkMs?: number
  localReadMs?: number
  /** all of restoring; the steps below are part of it (present when chunks were assembled) */
  restoreMs: number
  /** waiting for the local chunks still being read when the fetch ended, or reading them */
  readMs?: number
  assembleMs?: number
  /** writing the assembled state to tmpfs for llama.cpp */
  writeMs?: number
  loadMs?: number
  /**
   * the state was assembled as its chunks came in (local ones read during the fetch, fetched ones as they
   * arrived), so restoring only wrote and loaded it; false: assembled afterwards from fewer chunks than planned
   */
  assembledAsArrived?: boolean
  /** the local part of the prefix came from the state kept when it was last restored, not from its chunks */
  localFromKeptState?: boolean
  prefillMs: number
  /**
   * GC pauses between the prompt's arrival and the first token, and the part of them in full
   * (mark-compact) collections: under a CPU quota these show up as waits in the steps above
   */
  gcMs?: number
  majorGcMs?: number
}

export interface QueryOptions {
  maxTokens?: number
  temperature?: number
  topP?: number
  topK?: number
  seed?: number
  /** stop generating when the text contains one of these (the stop string is not returned) */
  stop?: string[]
  /** skip the cache entirely (cold run, nothing stored) */
  noCache?: boolean
  /** called with each piece of generated text as it is produced */
  onText?: (text: string) => void
  signal?: AbortSignal
}

/** Chunks fetched from peers for a run of consecutive keys. */
export interface RemoteFetchResult {
  /** payloads for keys[from], keys[from+1], ... (a prefix of what was asked) */
  chunks: Uint8Array[]
  bytes: number
  peers: string[]
  /** requests sent to peers, and those that delivered nothing */
  requests?: number
  emptyRequests?: number
}

/** A fetch may first take as long as computing this many blocks would (see fetchBudget). */
const PROBE_BLOCKS = 2

/**
 * ... and at least this long: opening a stream and the first round trip take tens of ms whatever the
 * CPU, so with a small model on a fast CPU a shorter allowance is decided by scheduling noise, not by
 * the link.
 */
const MIN_FETCH_ALLOWANCE_MS = 100

/**
 * ... and at least this many times the first chunk's measured wait: on a starved CPU, opening a stream
 * and a peer's first answer can take longer than computing two blocks, although the chunks that follow
 * come fast (never longer, though, than computing every block peers claim).
 */
const FIRST_CHUNK_MARGIN = 2

/**
 * A fetch that brought nothing marks the link as slow and later fetches are skipped; after k such
 * fetches in a row the next 2^k - 1 are skipped (at most this many), then the link is tried again, so a
 * stalled moment never turns fetching off for good and a slow link costs a probe now and then.
 */
const MAX_SKIPS_AFTER_STALL = 15

/**
 * Scratch kept between queries for restoring (chunks read + the state assembled: twice the state);
 * 600 tokens of the Gemma-3-270M shape need 21 MB. Bigger restores allocate their own.
 */
const MAX_SCRATCH_BYTES = 64 * 1024 * 1024

/** The local prefix came from its kept state (see localPrefix): it is in the assembly, there are no chunks. */
const KEPT = 'kept'
type LocalPrefix = ParsedChunk[] | typeof KEPT

/** How long a fetch may take: see fetchBudget. */
interface FetchBudget { deadlineMs?: number, creditMsPerChunk?: number }

/** A fetch the pipeline decided to send: where, for how long, and how many keys it may bring at best. */
interface FetchPlan { remote: RemoteChunkSource, budget: FetchBudget, claimable: number }

/** A chunk a peer sent, verified to be the one its key names. */
interface FetchedChunk { key: string, payload: Uint8Array, chunk: ParsedChunk }

export interface RemoteFetchOptions {
  signal?: AbortSignal
  deadlineMs?: number
  creditMsPerChunk?: number
  /** called as each chunk arrives (keys[index], in any order), before the fetch ends */
  onChunk?: (index: number, bytes: Uint8Array) => void
}

/** What the pipeline needs from the mesh; absent on a single node. */
export interface RemoteChunkSource {
  /**
   * fetches keys[from..] in order; gives up at `deadlineMs` (moved `creditMsPerChunk` later by every
   * chunk that arrives) and returns what arrived
   */
  fetchContinuation: (keys: string[], from: number, options: RemoteFetchOptions) => Promise<RemoteFetchResult>
  /** how many of keys[from..] some peer may hold, in a row */
  claimable?: (keys: string[], from: number) => number
  /** measured bytes per ms from the peers that would be asked; undefined until measured */
  throughput?: (keys: string[], from: number) => number | undefined
}

export interface PipelineInit {
  engine: Engine
  store: ChunkStore
  /** @default 32 */
  blockTokens?: number
  remote?: RemoteChunkSource
  /**
   * false: never read or write chunks (the `none` strategy)
   * @default true
   */
  cache?: boolean
  /**
   * fetch from peers only while that is expected to beat computing (measured prefill speed vs
   * measured transfer speed), and never for longer than computing would take
   * @default true
   */
  adaptive?: boolean
  log?: Logger
}

/**
 * The query path, top to bottom: tokens → chained keys → longest cached prefix (local, then peers) →
 * assemble and load → evaluate the rest (saving states so new blocks can be cut) → generate → store
 * the new chunks. Any cache failure falls back to computing: never a wrong answer.
 */
export class Pipeline {
  /** 'query' after every answered query (metrics, logs) */
  readonly events = new EventEmitter<{ query: [QueryResult] }>()
  readonly engine: Engine
  readonly store: ChunkStore
  readonly blockTokens: number
  remote?: RemoteChunkSource
  readonly cache: boolean
  readonly adaptive: boolean
  private readonly log?: Logger
  /** measured prefill cost, ms per token (exponentially weighted); undefined until the first query */
  private msPerToken?: number
  /** what fetches delivered, bytes per ms (exponentially weighted); undefined until a fetch delivered */
  private linkBytesPerMs?: number
  /** ms from a fetch's start to its first chunk (exponentially weighted), from fetches that delivered */
  private firstChunkMs?: number
  /** fetches in a row that brought nothing, and fetches still to skip because of them */
  private stalledFetches = 0
  private skipsLeft = 0
  /** local chunks are read and states assembled here (one query at a time) */
  private readonly scratch = new Arena(MAX_SCRATCH_BYTES)

  constructor (init: PipelineInit) {
    this.engine = init.engine
    this.store = init.store
    this.blockTokens = init.blockTokens ?? DEFAULT_BLOCK_TOKENS
    // a block's SWA cells must all be in one saved state: a longer block would silently cache nothing
    const window = init.engine.info.swaWindow
    if (window != null && this.blockTokens > window) {
      throw new BlockTooLongError(`blocks of ${this.blockTokens} tokens are longer than this model's sliding window (${window}): nothing could be cached; use --block-tokens ${window} or less`)
    }
    this.remote = init.remote
    this.cache = init.cache ?? true
    this.adaptive = init.adaptive ?? true
    this.log = init.log
    gcPauses.watch()
  }

  async run (prompt: string, options: QueryOptions = {}): Promise<QueryResult> {
    const t0 = performance.now()
    const tokens = this.engine.tokenize(prompt)
    return await this.runTokens(tokens, options, t0)
  }

  async runTokens (tokens: number[], options: QueryOptions = {}, t0 = performance.now()): Promise<QueryResult> {
    const maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS
    if (tokens.length === 0) throw new RangeError('empty prompt')
    if (tokens.length + maxTokens > this.engine.contextSize) {
      throw new PromptTooLongError(`prompt of ${tokens.length} tokens plus ${maxTokens} to generate exceeds the context size ${this.engine.contextSize}`)
    }
    // garbage is collected once no query is running, not halfway through the next one
    const done = idleCollector.busy()
    let result: QueryResult
    try {
      result = await this.engine.lock(async () => {
        // a client that left while queued costs nothing: prefill cannot be interrupted once started
        options.signal?.throwIfAborted()
        return await this.answer(tokens, maxTokens, options, t0)
      })
    } finally {
      done()
    }
    this.events.emit('query', result)
    return result
  }

  private async answer (tokens: number[], maxTokens: number, options: QueryOptions, t0: number): Promise<QueryResult> {
    const engine = this.engine
    const chain = new ReuseChain(engine.fingerprint, tokens, this.blockTokens, this.cache && options.noCache !== true && engine.layout != null)
    const report: CacheReport = { source: 'none', reusedTokens: 0, bytesFetched: 0, peers: [], localTokens: 0, remoteTokens: 0, storedChunks: 0, requests: 0, emptyRequests: 0, fetchSkipped: false }
    const timings: QueryTimings = { lookupMs: 0, fetchMs: 0, restoreMs: 0, prefillMs: 0 }
    let mark = performance.now()
    const lap = (): number => { const now = performance.now(); const d = now - mark; mark = now; return d }
    let cpuMark = process.cpuUsage()
    const cpuLap = (): number => { const d = process.cpuUsage(cpuMark); cpuMark = process.cpuUsage(); return (d.user + d.system) / 1000 }

    // 1. the longest cached prefix: the local chain (index only), then peers for the continuation
    let local = 0
    while (local < chain.length && this.store.has(chain.keys[local] as string)) local++
    timings.lookupMs = lap()
    // while the link is busy, the local chunks are read and verified and the state is assembled as
    // chunks arrive: restoring then only writes and loads it
    this.scratch.reset()
    const plan = this.planFetch(chain, local, report)
    const assembly = plan != null ? this.startAssembly(chain, local + plan.claimable) : undefined
    const fetchStart = performance.now()
    const fetching = plan != null ? this.fetchChunks(plan, chain, tokens, local, report, options.signal, assembly, timings) : Promise.resolve([])
    const localChunks = plan != null
      ? this.localPrefix(chain, tokens, local, assembly).then(c => { timings.localReadMs = performance.now() - fetchStart; return c }, () => [])
      : undefined
    const fetched = await fetching
    timings.fetchMs = lap()
    timings.fetchCpuMs = cpuLap()

    // 2. restore it (or start empty)
    const restored = await this.restore(chain, tokens, local, fetched, localChunks, timings, assembly)
    timings.restoreMs = lap()
    timings.restoreCpuMs = cpuLap()
    const restoredTokens = chain.covered(restored.entries)
    report.localTokens = chain.covered(restored.local)
    report.remoteTokens = restoredTokens - report.localTokens
    report.reusedTokens = restoredTokens
    report.source = restored.entries === 0 ? 'none' : restored.local === restored.entries ? 'local' : restored.local === 0 ? 'remote' : 'mixed'

    // 3. evaluate the rest and generate, cutting the prompt's new chunks out of states saved on the way
    const cutter = new ChunkCutter(engine, this.store, chain, Math.min(restored.entries, chain.reusable), this.log)
    const out = await this.evaluateAndGenerate(tokens.slice(restoredTokens), restoredTokens, maxTokens, options, cutter, t0, () => {
      timings.prefillMs = lap()
      this.learnPrefill(tokens.length - restoredTokens, timings.prefillMs)
    })

    const gc = gcPauses.within(t0, t0 + out.ttftMs)
    timings.gcMs = gc.ms
    timings.majorGcMs = gc.majorMs

    // 4. keep what was computed or fetched, so it is reused here and shared onward
    for (const [key, payload] of [...restored.fetched.map(f => [f.key, f.payload] as const), ...cutter.cut]) {
      try {
        if (await this.store.put(key, payload)) report.storedChunks++
      } catch (err) {
        this.log?.error('storing chunk %s failed: %s', key, (err as Error).message)
      }
    }
    // 5. a prompt computed from nothing leaves its state kept too, as a restored one does: a later prompt
    // sharing a prefix with it takes the prefix from one file (see localPrefix). After the last token.
    if (restored.entries === 0 && cutter.cut.size > 0) await this.keepComputed(chain, cutter.cut)
    return { ...out, promptTokens: tokens.length, cache: report, timings }
  }

  /**
   * Whether to ask peers for chain.keys[from..]: a fetch is planned when one is expected to beat
   * computing (see fetchBudget); `claimable` is how many keys it may bring at best.
   */
  private planFetch (chain: ReuseChain, from: number, report: CacheReport): FetchPlan | undefined {
    const remote = this.remote
    if (remote == null || from >= chain.length) return undefined
    const claimable = remote.claimable?.(chain.keys, from) ?? chain.length - from
    const budget = this.fetchBudget(chain.keys, from)
    if (budget == null) {
      report.fetchSkipped = claimable > 0
      return undefined
    }
    return { remote, budget, claimable }
  }

  /**
   * The state for the first `entries` entries of the chain, to be filled while the fetch runs;
   * undefined when the codec cannot plan it (the chunks are assembled after the fetch instead).
   */
  private startAssembly (chain: ReuseChain, entries: number): StateAssembly | undefined {
    const layout = this.engine.layout
    if (layout == null || entries === 0) return undefined
    const counts: number[] = []
    for (let i = 0; i < entries; i++) counts.push(chain.span(i).count)
    try {
      return new StateAssembly(layout, counts, n => this.scratch.alloc(n))
    } catch (err) {
      this.log?.error('cannot plan the state of %d chunks: %s', entries, (err as Error).message)
      return undefined
    }
  }

  /** Verified chunks for keys[from..], in order, as many as arrived in a row; each placed in `assembly` as it comes. */
  private async fetchChunks ({ remote, budget }: FetchPlan, chain: ReuseChain, tokens: number[], from: number, report: CacheReport, signal?: AbortSignal, assembly?: StateAssembly, timings?: QueryTimings): Promise<FetchedChunk[]> {
    const started = performance.now()
    let firstChunkMs: number | undefined
    const arrived = new Map<number, FetchedChunk | undefined>()
    const accept = (i: number, payload: Uint8Array): FetchedChunk | undefined => {
      firstChunkMs ??= performance.now() - started
      if (timings != null) {
        timings.lastChunkMs = performance.now() - started
        timings.firstChunkMs ??= timings.lastChunkMs
      }
      const chunk = this.validChunk(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), tokens, chain.span(i))
      const got = chunk != null ? { key: chain.keys[i] as string, payload, chunk } : undefined
      arrived.set(i, got)
      if (got != null) this.place(assembly, i, got.chunk)
      return got
    }
    const onChunk = (index: number, payload: Uint8Array): void => { if (index >= from && !arrived.has(index)) accept(index, payload) }
    const fetched: FetchedChunk[] = []
    try {
      const res = await remote.fetchContinuation(chain.keys, from, { signal, onChunk, ...budget })
      report.bytesFetched = res.bytes
      report.peers = res.peers
      report.requests = res.requests ?? 0
      report.emptyRequests = res.emptyRequests ?? 0
      for (const payload of res.chunks) {
        const i = from + fetched.length
        // a source that does not report chunks as they come: verified now
        const got = arrived.has(i) ? arrived.get(i) : accept(i, payload)
        if (got == null) break
        fetched.push(got)
      }
    } catch (err) {
      this.log?.error('fetching chunks from peers failed, computing instead: %s', (err as Error).message)
    } finally {
      // a fetch that failed or timed out counts too: it puts the next ones off (see learnLink)
      if (report.requests > 0) this.learnLink(report.bytesFetched, performance.now() - started, firstChunkMs)
    }
    return fetched
  }

  /**
   * Loads the first `local` entries (from the store) and then `fetched` into the engine: a kept
   * assembled state when there is one, else chunks read, verified and assembled. Any failure leaves
   * a shorter (or empty) prefix, never a wrong one.
   */
  private async restore (chain: ReuseChain, tokens: number[], local: number, fetched: FetchedChunk[], localChunks?: Promise<LocalPrefix>, timings?: QueryTimings, assembly?: StateAssembly): Promise<{ entries: number, local: number, fetched: FetchedChunk[] }> {
    const engine = this.engine
    let mark = performance.now()
    const step = (name: 'readMs' | 'assembleMs' | 'writeMs' | 'loadMs'): void => {
      const now = performance.now()
      if (timings != null) timings[name] = (timings[name] ?? 0) + now - mark
      mark = now
    }
    // settled before anything returns: the next query's reads go to the same scratch
    const read = await localChunks
    // the kept prefix state went into the assembly; when the fetch left it incomplete, the chunks are read after all
    const keptDone = read === KEPT && fetched.length > 0 && assembly?.complete === true && assembly.counts.length === local + fetched.length
    if (timings != null && read != null) timings.localFromKeptState = keptDone
    await engine.reset()
    const hotKey = fetched.length === 0 && local > 0 ? chain.keys[local - 1] as string : undefined
    const hot = hotKey != null ? engine.states.get(hotKey) : undefined
    if (hotKey != null && hot != null) {
      try {
        await engine.loadStateFile(hot)
        return { entries: local, local, fetched: [] }
      } catch (err) {
        this.log?.error('a kept prefix state failed to load: %s', (err as Error).message)
        await engine.states.drop(hotKey)
        await engine.reset()
      }
    }
    if (local + fetched.length === 0) return { entries: 0, local: 0, fetched: [] }
    const chunks = keptDone ? undefined : read != null && read !== KEPT ? read : await this.localChunks(chain, tokens, local)
    step('readMs')
    // a local chunk gone bad: the fetched ones no longer continue the prefix
    const used = chunks != null && chunks.length < local ? [] : fetched
    chunks?.push(...used.map(f => f.chunk))
    const entries = chunks?.length ?? local + used.length
    if (entries === 0) return { entries: 0, local: 0, fetched: [] }
    const lastKey = chain.keys[entries - 1] as string
    try {
      // assembled during the fetch when everything planned arrived, else now from what did
      const streamed = assembly?.complete === true && assembly.counts.length === entries
      const state = streamed ? assembly.bytes : assembleState(chunks ?? [], engine.layout, n => this.scratch.alloc(n))
      if (timings != null) timings.assembledAsArrived = streamed
      parseState(state) // full validation before llama.cpp sees it: a bad file can abort the process
      step('assembleMs')
      const file = await engine.states.put(lastKey, state, chain.keys.slice(0, entries))
      step('writeMs')
      try {
        await engine.loadStateFile(file)
        step('loadMs')
      } finally {
        if (!engine.states.kept(file)) await rm(file, { force: true })
      }
      return { entries, local: entries - used.length, fetched: used }
    } catch (err) {
      this.log?.error('restoring %d cached chunks failed, computing instead: %s', entries, (err as Error).message)
      await engine.states.drop(lastKey)
      await engine.reset()
      return { entries: 0, local: 0, fetched: [] }
    }
  }

  /**
   * Evaluates `rest` (the prompt after the restored prefix, at position `at`) and generates. SWA layers
   * forget cells beyond their window, so states are saved for cutting at least once per window; the
   * first token is out before the final save, so TTFT does not pay for it.
   */
  private async evaluateAndGenerate (rest: number[], at: number, maxTokens: number, options: QueryOptions, cutter: ChunkCutter, t0: number, onPrefilled: () => void): Promise<Pick<QueryResult, 'text' | 'tokens' | 'ttftMs' | 'ttltMs' | 'finishReason'>> {
    const engine = this.engine
    const window = engine.info.swaWindow
    const segment = window != null ? Math.max(this.blockTokens, Math.floor(window / this.blockTokens) * this.blockTokens) : Infinity
    let next = 0
    while (rest.length - next > segment) {
      await engine.evaluate(rest.slice(next, next + segment))
      next += segment
      await cutter.saveAndCut()
    }

    let ttft = 0
    let text = ''
    let streamed = 0
    let finishReason: QueryResult['finishReason'] = 'length'
    const generated: number[] = []
    const stopAt = options.stop?.filter(s => s.length > 0) ?? []
    const controller = new AbortController()
    const onAbort = (): void => controller.abort(options.signal?.reason)
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const out = await engine.generate(rest.slice(next), {
        maxTokens,
        temperature: options.temperature,
        topP: options.topP,
        topK: options.topK,
        seed: options.seed,
        signal: controller.signal,
        onToken: async (token, index) => {
          if (index === 0) {
            ttft = performance.now() - t0
            onPrefilled()
            await cutter.saveAndCut()
          }
          generated.push(token)
          const full = engine.detokenize(generated)
          const hit = stopAt.map(s => full.indexOf(s, Math.max(0, text.length - s.length))).filter(i => i >= 0).sort((a, b) => a - b)[0]
          text = hit != null ? full.slice(0, hit) : full
          // stream only what cannot turn out to be the start of a stop string
          const safe = hit != null ? text.length : text.length - heldBack(text, stopAt)
          if (safe > streamed) { options.onText?.(text.slice(streamed, safe)); streamed = safe }
          if (hit != null) { finishReason = 'stop'; controller.abort(new StopReached()) }
        }
      })
      if (out.length < maxTokens) finishReason = 'stop'
    } catch (err) {
      if (!(controller.signal.reason instanceof StopReached)) throw err
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
    if (text.length > streamed) options.onText?.(text.slice(streamed))
    const ttlt = performance.now() - t0
    if (generated.length === 0) {
      ttft = ttlt
      await cutter.saveAndCut()
    }
    return { text, tokens: generated, ttftMs: ttft, ttltMs: ttlt, finishReason }
  }

  /**
   * How long a fetch of keys[from..] may take, or undefined when computing the blocks peers could give
   * is expected to be faster than moving them. Nothing measured yet: no limit. Otherwise the fetch
   * starts with the compute time of PROBE_BLOCKS blocks (at least MIN_FETCH_ALLOWANCE_MS) and every
   * chunk that arrives earns its own compute time: a fetch goes on while it saves more than it costs,
   * and when the link turns out slow it stops having lost at most that first allowance. The first
   * chunk may also take FIRST_CHUNK_MARGIN times its measured wait; after a fetch that brought
   * nothing, fetches are skipped for a while (see MAX_SKIPS_AFTER_STALL).
   */
  private fetchBudget (keys: string[], from: number): FetchBudget | undefined {
    if (!this.adaptive || this.msPerToken == null) return {}
    const blocks = this.remote?.claimable?.(keys, from) ?? keys.length - from
    if (blocks <= 0) return undefined
    // the peers' measured speed, else what this node saw of the mesh (skipping for a while after a stall)
    const peerSpeed = this.remote?.throughput?.(keys, from)
    if (peerSpeed == null && this.skipsLeft > 0) {
      this.skipsLeft--
      return undefined
    }
    const blockMs = this.blockTokens * this.msPerToken
    const speed = peerSpeed ?? this.linkBytesPerMs
    if (speed != null && this.chunkBytes > 0 && this.chunkBytes / speed > blockMs) return undefined
    const firstChunk = Math.min(blocks * blockMs, (this.firstChunkMs ?? 0) * FIRST_CHUNK_MARGIN)
    return { deadlineMs: Math.max(MIN_FETCH_ALLOWANCE_MS, Math.min(blocks, PROBE_BLOCKS) * blockMs, firstChunk), creditMsPerChunk: blockMs }
  }

  /** Bytes of one block's chunk in this model's layout (0: layout unknown). */
  private get chunkBytes (): number {
    return this.engine.layout != null ? chunkBytesFor(this.engine.layout, this.blockTokens) : 0
  }

  /**
   * What fetches delivered per ms, and how long their first chunk took. A fetch that ended with nothing
   * is no measurement (a slow link and a peer slow to answer look the same): fetches are skipped for a
   * while, longer after each such fetch in a row, and then the link is tried again.
   */
  private learnLink (bytes: number, ms: number, firstChunkMs?: number): void {
    if (ms <= 0) return
    if (bytes > 0) {
      const sample = bytes / ms
      this.linkBytesPerMs = this.linkBytesPerMs == null ? sample : this.linkBytesPerMs * 0.7 + sample * 0.3
      if (firstChunkMs != null) this.firstChunkMs = this.firstChunkMs == null ? firstChunkMs : this.firstChunkMs * 0.7 + firstChunkMs * 0.3
      this.stalledFetches = 0
      this.skipsLeft = 0
    } else {
      this.stalledFetches++
      this.skipsLeft = Math.min(MAX_SKIPS_AFTER_STALL, 2 ** this.stalledFetches - 1)
    }
  }

  private learnPrefill (tokens: number, ms: number): void {
    if (tokens < this.blockTokens) return // a few tokens say little about the prefill rate
    const sample = ms / tokens
    this.msPerToken = this.msPerToken == null ? sample : this.msPerToken * 0.7 + sample * 0.3
  }

  /**
   * The first `count` entries of the chain placed in `assembly`: from a kept state that begins with that
   * prefix when there is one (KEPT: one tmpfs file, assembled for an earlier prompt, instead of
   * reading, hashing and parsing a chunk file per block, which is most of a repeated prompt's CPU time on
   * a Pi-class quota), else the chunks read from the store.
   */
  private async localPrefix (chain: ReuseChain, tokens: number[], count: number, assembly?: StateAssembly): Promise<LocalPrefix> {
    const key = chain.keys[count - 1]
    const kept = assembly != null && key != null ? this.engine.states.beginning(key) : undefined
    if (assembly != null && kept != null) {
      try {
        assembly.placePrefix(count, parseState(await readWhole(kept.path, n => this.scratch.alloc(n))), tokens)
        return KEPT
      } catch (err) {
        this.log?.error('a kept prefix state cannot be used, reading its chunks: %s', (err as Error).message)
        await this.engine.states.drop(kept.key)
      }
    }
    return await this.localChunks(chain, tokens, count, assembly)
  }

  /** Assembles and keeps the state of every entry of the chain from the chunks just cut (all of them, or nothing is kept). */
  private async keepComputed (chain: ReuseChain, cut: Map<string, Buffer>): Promise<void> {
    const last = chain.keys[chain.length - 1]
    if (last == null || this.engine.states.has(last)) return
    try {
      const chunks: ParsedChunk[] = []
      for (const key of chain.keys) {
        const bytes = cut.get(key)
        if (bytes == null) return
        chunks.push(parseChunk(bytes))
      }
      await this.engine.states.put(last, assembleState(chunks, this.engine.layout, n => this.scratch.alloc(n)), chain.keys)
    } catch (err) {
      this.log?.error('keeping the state of a computed prompt failed: %s', (err as Error).message)
    }
  }

  /** The first `count` entries of the chain from the store, verified; stops at the first one missing or bad. */
  private async localChunks (chain: ReuseChain, tokens: number[], count: number, assembly?: StateAssembly): Promise<ParsedChunk[]> {
    const chunks: ParsedChunk[] = []
    for (let i = 0; i < count; i++) {
      const chunk = await this.localChunk(chain.keys[i] as string, tokens, chain.span(i))
      if (chunk == null) break
      chunks.push(chunk)
      this.place(assembly, i, chunk)
    }
    return chunks
  }

  /** Writes entry i into the state being assembled; a chunk that does not fit leaves it incomplete (assembled later, or not used). */
  private place (assembly: StateAssembly | undefined, i: number, chunk: ParsedChunk): void {
    try {
      assembly?.place(i, chunk)
    } catch (err) {
      this.log?.error('chunk %d does not fit the planned state: %s', i, (err as Error).message)
    }
  }

  /** A stored chunk for these positions of these tokens, or undefined (missing, corrupt, or not these tokens). */
  private async localChunk (key: string, tokens: number[], span: Span): Promise<ParsedChunk | undefined> {
    const payload = await this.store.get(key, n => this.scratch.alloc(n))
    if (payload == null) return undefined
    const chunk = this.validChunk(payload, tokens, span)
    if (chunk == null) await this.store.delete(key)
    return chunk
  }

  /** The chunk if it holds exactly positions [first, first + count) of these tokens (a block or a tail). */
  private validChunk (payload: Buffer, tokens: number[], { first, count }: Span): ParsedChunk | undefined {
    try {
      const chunk = parseChunk(payload)
      if (chunk.blockTokens !== count || chunk.firstPos !== first) return undefined
      for (let t = 0; t < count; t++) if (chunk.tokens[t] !== tokens[first + t]) return undefined
      return chunk
    } catch (err) {
      this.log?.error('rejecting chunk for positions %d+%d: %s', first, count, (err as Error).message)
      return undefined
    }
  }
}

/** Length of the longest end of `text` that begins one of the stop strings. */
function heldBack (text: string, stops: string[]): number {
  let n = 0
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > n; k--) {
      if (text.endsWith(stop.slice(0, k))) { n = k; break }
    }
  }
  return n
}

class StopReached extends Error {
  override name = 'StopReached'
}
