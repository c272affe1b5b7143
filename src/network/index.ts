/**
 * @packageDocumentation
 *
 * The promptmesh node on the network: libp2p 3 with the catalog and kv-transfer services, static
 * peers and mDNS dialling, and the MeshFetcher the pipeline uses as its RemoteChunkSource.
 *
 * @example
 *
 * ```TypeScript
 * import '../polyfill.js'
 * const store = await ChunkStore.open({ dir: join(dataDir, 'cache') })
 * const node = await createMeshNode({ modelFingerprint, store, dataDir, peers: ['/ip4/10.0.0.2/tcp/4001/p2p/12D3Koo...'] })
 * const pipeline = new Pipeline({ engine, store, remote: node.fetcher })
 * // ...
 * await node.stop()
 * ```
 */

import type { MeshFetcher, MeshFetcherInit } from './fetcher.js'
import type { PeerDialer, PeerDialerInit } from './dialer.js'
import type { PeerGuard, PeerGuardInit } from './peer-guard.js'
import type { Catalog, CatalogInit, CatalogKeyProvider } from '../catalog/index.js'
import type { KvChunkProvider, KvTransfer, KvTransferInit } from '../transfer/index.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { ComponentLogger, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export { createMeshNode } from './mesh-node.js'
export { MeshFetcher } from './fetcher.js'
export type { MeshFetcherInit, MeshFetcherStats } from './fetcher.js'
export { peerDialer } from './dialer.js'
export type { PeerDialer, PeerDialerInit, StaticPeerStatus } from './dialer.js'
export { loadOrCreatePeerKey } from './identity.js'
export { PeerGuard } from './peer-guard.js'
export type { PeerGuardInit, PeerGuardStats, BannedPeer, Offence, RateLimit } from './peer-guard.js'
export { generateSwarmKey, parseSwarmKey, readSwarmKey, swarmKeyPermissionWarning, writeSwarmKey, SWARM_KEY_BYTES } from './swarm-key.js'
export { PeerKeyError, InvalidPeerAddressError, SwarmKeyError } from './errors.js'
export { DEFAULT_LISTEN, PEER_KEY_FILE, DEFAULT_FETCH_TIMEOUT_MS, DEFAULT_BAN_MS, DEFAULT_MAX_FAULTS, DEFAULT_MAX_CONNECTIONS } from './constants.js'

/** What the node needs from the chunk store: keys and their changes (catalog) and reads (serving). A ChunkStore fits. */
export type MeshChunkProvider = CatalogKeyProvider & KvChunkProvider

export interface MeshNodeInit {
  /** hex model fingerprint: names the catalog topic, checked on every request */
  modelFingerprint: string
  store: MeshChunkProvider
  /** the identity lives in `<dataDir>/peer-key` (created on first start); without it (and without `privateKey`) every start is a new peer */
  dataDir?: string
  /** overrides `dataDir`'s identity */
  privateKey?: PrivateKey
  /** @default ['/ip4/0.0.0.0/tcp/0'] */
  listen?: string[]
  /** addresses announced instead of the listening ones */
  announce?: string[]
  /** multiaddrs of static peers, dialled at start and redialled with backoff when they drop */
  peers?: string[]
  /** redial backoff of static peers */
  dialer?: Pick<PeerDialerInit, 'redialBaseMs' | 'redialMaxMs'>
  /**
   * discover and dial peers on the local network (never in a shared namespace you do not own: it multicasts)
   * @default true
   */
  mdns?: boolean
  /** @default 10000 */
  mdnsIntervalMs?: number
  /**
   * a private mesh: the swarm key (the `swarm.key` file's bytes, see `promptmesh swarm-key generate`);
   * every connection is encrypted with it first, so nodes without the same key cannot connect at all
   */
  swarmKey?: Uint8Array
  /** how misbehaving peers are cut off (ban length, faults tolerated, request rates) */
  guard?: Omit<PeerGuardInit, 'logger'>
  /** @default 100 */
  maxConnections?: number
  catalog?: Omit<CatalogInit, 'modelFingerprint' | 'provider' | 'policy'>
  transfer?: Omit<KvTransferInit, 'modelFingerprint' | 'provider' | 'policy'>
  fetcher?: Omit<MeshFetcherInit, 'catalog' | 'transfer' | 'logger' | 'peers' | 'policy'>
  /** @default true */
  start?: boolean
  logger?: ComponentLogger
}

// a type alias (not an interface) so that it satisfies libp2p's ServiceMap index signature
export type MeshServices = {
  identify: Identify
  pubsub: GossipSub
  catalog: Catalog
  kv: KvTransfer
  dialer: PeerDialer
}

export interface MeshNode {
  readonly libp2p: Libp2p<MeshServices>
  readonly peerId: PeerId
  readonly catalog: Catalog
  readonly transfer: KvTransfer
  /** the pipeline's RemoteChunkSource */
  readonly fetcher: MeshFetcher
  /** rate limits, offences and banned peers */
  readonly guard: PeerGuard
  /** true when started with a swarm key */
  readonly privateMesh: boolean
  /** idempotent */
  start: () => Promise<void>
  /** idempotent; stops every timer, stream and connection */
  stop: () => Promise<void>
  getMultiaddrs: () => Multiaddr[]
  connectedPeers: () => PeerId[]
}
