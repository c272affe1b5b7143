import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { QueryResult } from '../pipeline/pipeline.js'

/** Live numbers the node reads at scrape time (services keep their own counters). */
export interface MetricsSources {
  store: () => { chunks: number, bytes: number, maxBytes: number, evictions: number, corruptRemoved: number, missingRemoved: number, writeErrors: number }
  transfer?: () => { requestsServed: number, chunksServed: number, bytesServed: number, chunksFetched: number, bytesFetched: number, wireBytesServed: number, wireBytesFetched: number, verificationFailures: number, requestsRejected: number }
  catalog?: () => { entries: number, peers: number, falsePositives: number, published: number, received: number, rejected: number }
  fetcher?: () => { requests: number, emptyRequests: number, failedRequests: number, rejectedChunks: number }
  guard?: () => { cutOff: number, banned: number, limitOffences: number, faultOffences: number, rateLimited: number, refusedConnections: number }
  peers?: () => number
  queue?: () => number
}

/** TTFT buckets from 10 ms (hot hit on a desktop) to 10 minutes (long prompt on a Pi Zero). */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600]

/**
 * Prometheus metrics of one node, in a registry of its own (no global). Names follow vLLM's and
 * llama.cpp's where the meaning is the same (prompt_tokens_total, generation_tokens_total,
 * time_to_first_token_seconds, prefix_cache_queries/hits), prefixed `promptmesh_`.
 */
export class NodeMetrics {
  readonly registry = new Registry()
  private readonly queries: Counter<'source'>
  private readonly promptTokens: Counter
  private readonly generationTokens: Counter
  private readonly reusedTokens: Counter<'source'>
  private readonly computedTokens: Counter
  private readonly prefixQueries: Counter
  private readonly prefixHits: Counter
  private readonly ttft: Histogram
  private readonly ttlt: Histogram

  constructor (sources: MetricsSources) {
    const registers = [this.registry]
    this.queries = new Counter({ name: 'promptmesh_queries_total', help: 'Queries answered, by where the prompt\'s KV state came from (none, local, remote, mixed)', labelNames: ['source'], registers })
    for (const source of ['none', 'local', 'remote', 'mixed']) this.queries.inc({ source }, 0)
    this.promptTokens = new Counter({ name: 'promptmesh_prompt_tokens_total', help: 'Prompt tokens of answered queries', registers })
    this.generationTokens = new Counter({ name: 'promptmesh_generation_tokens_total', help: 'Generated tokens', registers })
    this.reusedTokens = new Counter({ name: 'promptmesh_prompt_tokens_reused_total', help: 'Prompt tokens restored from KV chunks instead of computed, by origin', labelNames: ['source'], registers })
    for (const source of ['local', 'remote']) this.reusedTokens.inc({ source }, 0)
    this.computedTokens = new Counter({ name: 'promptmesh_prompt_tokens_computed_total', help: 'Prompt tokens evaluated by the local engine', registers })
    this.prefixQueries = new Counter({ name: 'promptmesh_prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix cache (as vLLM counts them)', registers })
    this.prefixHits = new Counter({ name: 'promptmesh_prefix_cache_hits_total', help: 'Prompt tokens found in the prefix cache, local or remote', registers })
    this.ttft = new Histogram({ name: 'promptmesh_time_to_first_token_seconds', help: 'From prompt received to first generated token', buckets: LATENCY_BUCKETS, registers })
    this.ttlt = new Histogram({ name: 'promptmesh_time_to_last_token_seconds', help: 'From prompt received to last generated token', buckets: LATENCY_BUCKETS, registers })

    const gauge = (name: string, help: string, read: () => number | undefined): void => {
      // eslint-disable-next-line no-new
      new Gauge({ name, help, registers, collect () { const v = read(); if (v != null) this.set(v) } })
    }
    // services keep running totals: mirror them as counters by adding the difference at each scrape
    const mirrored = (name: string, help: string, read: () => number | undefined): void => {
      let last = 0
      // eslint-disable-next-line no-new
      new Counter({ name, help, registers, collect () { const v = read(); if (v != null && v >= last) { this.inc(v - last); last = v } } })
    }
    gauge('promptmesh_store_chunks', 'KV chunks in the local store', () => sources.store().chunks)
    gauge('promptmesh_store_bytes', 'Bytes of KV chunks in the local store', () => sources.store().bytes)
    gauge('promptmesh_store_max_bytes', 'Byte budget of the local store', () => sources.store().maxBytes)
    mirrored('promptmesh_store_evictions_total', 'Chunks evicted to keep the byte budget', () => sources.store().evictions)
    mirrored('promptmesh_store_corrupt_chunks_total', 'Chunks that failed verification on disk and were removed', () => sources.store().corruptRemoved)
    mirrored('promptmesh_store_missing_chunks_total', 'Indexed chunks whose file had gone and were forgotten', () => sources.store().missingRemoved)
    mirrored('promptmesh_store_write_errors_total', 'Chunks that could not be written (disk full, read-only, ...)', () => sources.store().writeErrors)
    mirrored('promptmesh_kv_chunks_served_total', 'KV chunks sent to peers', () => sources.transfer?.().chunksServed)
    mirrored('promptmesh_kv_bytes_served_total', 'Bytes of KV chunks written to peers, including transfers the requester gave up on', () => sources.transfer?.().bytesServed)
    mirrored('promptmesh_kv_requests_served_total', 'Chunk requests answered for peers', () => sources.transfer?.().requestsServed)
    mirrored('promptmesh_kv_chunks_fetched_total', 'KV chunks received from peers', () => sources.transfer?.().chunksFetched)
    mirrored('promptmesh_kv_bytes_received_total', 'Bytes of KV chunks received from peers', () => sources.transfer?.().bytesFetched)
    mirrored('promptmesh_kv_wire_bytes_served_total', 'Bytes of chunk data sent on the link (encoded chunks count their encoded size)', () => sources.transfer?.().wireBytesServed)
    mirrored('promptmesh_kv_wire_bytes_received_total', 'Bytes of chunk data received on the link (encoded chunks count their encoded size)', () => sources.transfer?.().wireBytesFetched)
    mirrored('promptmesh_kv_verification_failures_total', 'Chunks from peers that failed their SHA-256 check', () => sources.transfer?.().verificationFailures)
    mirrored('promptmesh_kv_requests_rejected_total', 'Chunk requests from peers refused (limits, bad input)', () => sources.transfer?.().requestsRejected)
    mirrored('promptmesh_fetch_requests_total', 'Chunk requests sent to peers', () => sources.fetcher?.().requests)
    mirrored('promptmesh_fetch_requests_wasted_total', 'Chunk requests sent to peers that delivered nothing', () => sources.fetcher?.().emptyRequests)
    mirrored('promptmesh_fetch_requests_failed_total', 'Chunk requests to peers that ended in an error or timeout', () => sources.fetcher?.().failedRequests)
    mirrored('promptmesh_fetch_chunks_rejected_total', 'Chunks from peers that were not the chunk their key names', () => sources.fetcher?.().rejectedChunks)
    mirrored('promptmesh_peer_cutoffs_total', 'Peers cut off for misbehaving (connections closed, refused for a while)', () => sources.guard?.().cutOff)
    gauge('promptmesh_peers_banned', 'Peers refused right now', () => sources.guard?.().banned)
    mirrored('promptmesh_peer_limit_offences_total', 'Requests or messages from peers beyond a protocol limit', () => sources.guard?.().limitOffences)
    mirrored('promptmesh_peer_fault_offences_total', 'Faults of peers: bad chunks, malformed frames, broken streams', () => sources.guard?.().faultOffences)
    mirrored('promptmesh_peer_rate_limited_total', 'Peer requests refused because the peer spent its budget', () => sources.guard?.().rateLimited)
    mirrored('promptmesh_peer_refused_connections_total', 'Connections and dials refused because the peer is banned', () => sources.guard?.().refusedConnections)
    gauge('promptmesh_catalog_entries', 'Keys in this node\'s own catalog', () => sources.catalog?.().entries)
    gauge('promptmesh_catalog_peers', 'Peers whose catalog this node holds', () => sources.catalog?.().peers)
    mirrored('promptmesh_catalog_false_positives_total', 'Peer catalogs that said yes for a chunk the peer did not have', () => sources.catalog?.().falsePositives)
    mirrored('promptmesh_catalog_published_total', 'Catalogs published', () => sources.catalog?.().published)
    mirrored('promptmesh_catalog_received_total', 'Valid catalogs received from peers', () => sources.catalog?.().received)
    mirrored('promptmesh_catalog_rejected_total', 'Catalog messages that failed validation', () => sources.catalog?.().rejected)
    gauge('promptmesh_peers', 'Connected peers', () => sources.peers?.())
    gauge('promptmesh_requests_queued', 'Queries waiting for or running on the engine', () => sources.queue?.())
  }

  /** Records one answered query. */
  observe (res: QueryResult): void {
    this.queries.inc({ source: res.cache.source })
    this.promptTokens.inc(res.promptTokens)
    this.generationTokens.inc(res.tokens.length)
    if (res.cache.localTokens > 0) this.reusedTokens.inc({ source: 'local' }, res.cache.localTokens)
    if (res.cache.remoteTokens > 0) this.reusedTokens.inc({ source: 'remote' }, res.cache.remoteTokens)
    this.computedTokens.inc(res.promptTokens - res.cache.reusedTokens)
    this.prefixQueries.inc(res.promptTokens)
    this.prefixHits.inc(res.cache.reusedTokens)
    this.ttft.observe(res.ttftMs / 1000)
    this.ttlt.observe(res.ttltMs / 1000)
  }

  async text (): Promise<string> { return await this.registry.metrics() }
  get contentType (): string { return this.registry.contentType }
}
