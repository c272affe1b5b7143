import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { ApiServer } from '../api/server.js'
import { tailKey } from '../cache/keys.js'
import { parseChunk } from '../engine/state-codec.js'
import { NodeMetrics } from '../metrics/metrics.js'
import { createMeshNode } from '../network/index.js'
import { openLocalNode } from './local.js'
import type { LocalNode, LocalNodeInit } from './local.js'
import type { ChunkStore } from '../cache/chunk-store.js'
import type { MeshNode } from '../network/index.js'

export interface PromptmeshNodeInit extends Omit<LocalNodeInit, 'cacheDir'> {
  /** identity (`peer-key`) and chunk store (`cache/`) live here */
  dataDir: string
  /** @default `<dataDir>/cache` */
  cacheDir?: string
  /** @default ['/ip4/0.0.0.0/tcp/0'] */
  listen?: string[]
  peers?: string[]
  /** @default true */
  mdns?: boolean
  /** private mesh: the swarm key's bytes (see MeshNodeInit.swarmKey) */
  swarmKey?: Uint8Array
  /** API host and port; omit to run without an API */
  api?: { host: string, port: number }
  apiKey?: string
  maxQueue?: number
  /**
   * `catalog` (promptmesh), `broadcast` (peers asked in turn, no catalog), `local` (own cache only),
   * `none` (no cache): the strategies the testnet compares
   * @default 'catalog'
   */
  strategy?: Strategy
}

export type Strategy = 'none' | 'local' | 'broadcast' | 'catalog'
export const STRATEGIES: readonly Strategy[] = ['none', 'local', 'broadcast', 'catalog']

/** A running promptmesh node: engine, store, pipeline, libp2p mesh and HTTP API. */
export interface PromptmeshNode {
  local: LocalNode
  mesh: MeshNode
  api?: ApiServer
  apiUrl?: string
  metrics: NodeMetrics
  status: () => NodeStatus
  stop: () => Promise<void>
}

export interface NodeStatus extends Record<string, unknown> {
  peerId: string
  addresses: string[]
  modelFingerprint: string
  peers: Array<{ peerId: string, connected: boolean, catalog: { entries: number, seq: number, ageMs: number, falsePositives: number } | null }>
  cache: { chunks: number, bytes: number, maxBytes: number, evictions: number, corruptRemoved: number, missingRemoved: number, writeErrors: number, lastProblem: string | null }
  /** peers cut off for misbehaving, refused until their ban ends */
  bannedPeers: Array<{ peerId: string, reason: string, remainingMs: number }>
}

export async function startNode (init: PromptmeshNodeInit): Promise<PromptmeshNode> {
  const strategy = init.strategy ?? 'catalog'
  const local = await openLocalNode({ ...init, cache: strategy !== 'none', cacheDir: init.cacheDir ?? join(init.dataDir, 'cache') })
  let mesh: MeshNode | undefined
  let api: ApiServer | undefined
  try {
    mesh = await createMeshNode({
      modelFingerprint: local.engine.fingerprint,
      store: process.env.PROMPTMESH_FAULT === 'corrupt-served-chunks' ? corruptingServer(local.store) : local.store,
      dataDir: init.dataDir,
      listen: init.listen,
      peers: init.peers,
      mdns: init.mdns ?? true,
      swarmKey: init.swarmKey,
      fetcher: { mode: strategy === 'broadcast' ? 'broadcast' : 'catalog', verify: chunkMatchesKey(local.engine.fingerprint, local.pipeline.blockTokens) },
      logger: init.logger
    })
    if (strategy === 'catalog' || strategy === 'broadcast') local.pipeline.remote = mesh.fetcher
    const m = mesh
    const status = (): NodeStatus => {
      const connected = new Set(m.connectedPeers().map(p => p.toString()))
      const catalogs = new Map(m.catalog.peers().map(c => [c.peerId, c]))
      const ids = new Set([...connected, ...catalogs.keys()])
      const stats = local.store.stats()
      return {
        peerId: m.peerId.toString(),
        addresses: m.getMultiaddrs().map(a => a.toString()),
        modelFingerprint: local.engine.fingerprint,
        peers: [...ids].sort().map(peerId => {
          const c = catalogs.get(peerId)
          return { peerId, connected: connected.has(peerId), catalog: c == null ? null : { entries: c.entries, seq: c.seq, ageMs: c.ageMs, falsePositives: c.falsePositives } }
        }),
        cache: {
          chunks: stats.chunks,
          bytes: stats.bytes,
          maxBytes: stats.maxBytes,
          evictions: stats.evictions,
          corruptRemoved: stats.corruptRemoved,
          missingRemoved: stats.missingRemoved,
          writeErrors: stats.writeErrors,
          lastProblem: stats.lastProblem
        },
        bannedPeers: m.guard.banned()
      }
    }
    const metrics = new NodeMetrics({
      store: () => local.store.stats(),
      transfer: () => m.transfer.stats(),
      catalog: () => m.catalog.stats(),
      fetcher: () => m.fetcher.stats(),
      guard: () => m.guard.stats(),
      peers: () => m.connectedPeers().length,
      queue: () => api?.queued ?? 0
    })
    local.pipeline.events.on('query', res => metrics.observe(res))
    let apiUrl: string | undefined
    if (init.api != null) {
      api = new ApiServer({ pipeline: local.pipeline, status, metrics: async () => ({ contentType: metrics.contentType, text: await metrics.text() }), modelId: local.engine.info.path.split('/').pop() ?? 'model', apiKey: init.apiKey, maxQueue: init.maxQueue, log: init.logger.forComponent('promptmesh:api') })
      apiUrl = await api.listen(init.api.host, init.api.port)
    }
    const a = api
    return {
      local,
      mesh: m,
      api: a,
      apiUrl,
      metrics,
      status,
      stop: async () => {
        await a?.close()
        await m.stop()
        await local.close()
      }
    }
  } catch (err) {
    await api?.close()
    await mesh?.stop()
    await local.close()
    throw err
  }
}

/**
 * The fetcher's check that a fetched chunk is the one its key names: it parses, it is block `index`,
 * and its tokens chain to the key (key_i = SHA-256(key_{i-1} ‖ tokens), key_-1 = the fingerprint), so
 * a peer sending any other chunk is caught and cut off before the pipeline sees it.
 */
function chunkMatchesKey (fingerprint: string, blockTokens: number): (keys: string[], index: number, bytes: Uint8Array) => string | undefined {
  return (keys, index, bytes) => {
    try {
      const chunk = parseChunk(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      if (chunk.blockTokens > blockTokens || chunk.firstPos !== index * blockTokens) return `not block ${index} of ${blockTokens} tokens`
      if (chunk.blockTokens < blockTokens) {
        // a prompt's tail: chained to the block before it with the tail marker
        return tailKey(fingerprint, index === 0 ? undefined : keys[index - 1], chunk.tokens, 0, chunk.tokens.length) === keys[index] ? undefined : 'its tokens do not chain to its key'
      }
      const tokens = Buffer.alloc(blockTokens * 4)
      chunk.tokens.forEach((t, i) => tokens.writeInt32LE(t, i * 4))
      const key = createHash('sha256').update(Buffer.from(index === 0 ? fingerprint : keys[index - 1] as string, 'hex')).update(tokens).digest('hex')
      return key === keys[index] ? undefined : 'its tokens do not chain to its key'
    } catch (err) {
      return (err as Error).message
    }
  }
}

/**
 * Fault injection for tests (PROMPTMESH_FAULT=corrupt-served-chunks): serves every chunk with one bit
 * flipped but the digest of the intact bytes, as a chunk damaged on the wire would arrive.
 */
function corruptingServer (store: ChunkStore): ChunkStore {
  return new Proxy(store, {
    get (target, prop, receiver) {
      if (prop === 'get') return async (key: string) => (await target.getWithDigest(key))?.bytes
      if (prop === 'getWithDigest') {
        return async (key: string) => {
          const found = await target.getWithDigest(key)
          if (found == null) return undefined
          const bytes = Buffer.from(found.bytes)
          bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0x10, bytes.length >> 1)
          return { bytes, sha256: found.sha256 }
        }
      }
      const value = Reflect.get(target, prop, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}
