/**
 * @packageDocumentation
 *
 * The catalog: every node announces a Bloom filter of the chunk keys it holds on the gossipsub topic
 * `/promptmesh/catalog/1/<modelFingerprint>` and keeps its peers' latest filters, so that a chunk is
 * asked only from peers that may have it. Wire format: `protocols/catalog.md`.
 *
 * @example
 *
 * ```TypeScript
 * const node = await createLibp2p({
 *   // ...transports, encrypters, muxers, identify
 *   services: {
 *     pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, floodPublish: true }),
 *     catalog: catalog({ modelFingerprint, provider: store })
 *   }
 * })
 * node.services.catalog.peersWith(key) // peers whose catalog may hold `key`
 * ```
 */

import { CatalogService } from './catalog.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, Libp2pEvents, PeerId, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'

/** `limit`: the peer exceeded a bound (catalog rate or size); `fault`: it sent a malformed or forged catalog. */
export type CatalogOffence = 'limit' | 'fault'

/** Rate limits and cutting peers off; the node's PeerGuard fits. Without one, offences are only counted. */
export interface CatalogPeerPolicy {
  /** takes one catalog from the publisher's allowance; false: ignore this catalog */
  admit: (peer: PeerId, kind: 'catalog') => boolean
  report: (peer: PeerId, offence: CatalogOffence, reason: string) => void
}

export {
  CATALOG_TOPIC_PREFIX, CATALOG_SEED, BITS_PER_KEY, HASHES, DEFAULT_PUBLISH_INTERVAL_MS, DEFAULT_CHANGE_THRESHOLD, DEFAULT_MAX_FILTER_BYTES,
  DEFAULT_MAX_CATALOG_PEERS, DEFAULT_MAX_TOTAL_FILTER_BYTES, DEFAULT_CATALOGS_PER_SECOND, DEFAULT_CATALOG_BURST, MAX_PUBSUB_MESSAGE_BYTES
} from './constants.js'
export { InvalidCatalogError } from './errors.js'
export { CatalogMessage } from '../../protocols/catalog.js'
export { decodeCatalog, catalogTopic } from './catalog.js'

/** What the catalog reads: the keys held and their changes (a ChunkStore fits). */
export interface CatalogKeyProvider {
  keys: () => Iterable<string>
  readonly count: number
  on: (event: 'added' | 'removed', listener: (key: string) => void) => unknown
  off: (event: 'added' | 'removed', listener: (key: string) => void) => unknown
}

export interface CatalogInit {
  /** hex model fingerprint; names the topic and is carried (and checked) in every message */
  modelFingerprint: string
  provider: CatalogKeyProvider
  /**
   * republish unconditionally this often; also the unit of expiry
   * @default 10000
   */
  publishIntervalMs?: number
  /**
   * drop a peer's catalog after this long without one
   * @default 3 × publishIntervalMs
   */
  expireAfterMs?: number
  /**
   * publish early once keys added + removed reach this fraction of the keys last announced
   * @default 0.05
   */
  changeThreshold?: number
  /**
   * largest filter accepted from a peer, in bytes
   * @default 1048576
   */
  maxFilterBytes?: number
  /**
   * peers whose catalogs are held at most
   * @default 128
   */
  maxPeers?: number
  /**
   * filter bytes held over all peers at most
   * @default 32 MiB
   */
  maxTotalFilterBytes?: number
  policy?: CatalogPeerPolicy
}

export interface CatalogComponents {
  peerId: PeerId
  /** the gossipsub service, registered under the name `pubsub` */
  pubsub: GossipSub
  events: TypedEventTarget<Libp2pEvents>
  /** a catalog is kept only while its publisher is connected: it is asked for chunks over that connection */
  connectionManager: Pick<ConnectionManager, 'getConnections'>
  logger: ComponentLogger
}

export interface CatalogPeerInfo {
  peerId: string
  /** keys the peer says it holds */
  entries: number
  seq: number
  /** since its latest catalog arrived */
  ageMs: number
  /** "yes" answers that turned out false */
  falsePositives: number
}

export interface CatalogStats {
  /** catalogs we published */
  published: number
  /** valid catalogs received (including stale ones) */
  received: number
  /** messages on our topic that failed validation (malformed, forged, oversized, unsigned) */
  rejected: number
  /** valid catalogs not kept: publisher not connected, over its rate, or over the peer/byte limits */
  ignored: number
  /** peers' "may have" that turned out NOT_FOUND */
  falsePositives: number
  /** catalogs ignored because a newer one from the same peer was already held */
  stale: number
  /** peers whose catalog is held */
  peers: number
  /** keys in our own filter */
  entries: number
  /** size of our own filter in bits */
  bits: number
}

export interface CatalogUpdateEvent {
  peerId: PeerId
  seq: number
  entries: number
}

export interface CatalogExpireEvent {
  peerId: PeerId
  reason: 'disconnect' | 'unsubscribed' | 'silent' | 'stopped'
}

export interface CatalogEvents {
  /** a peer's catalog was added or replaced by a newer one */
  'catalog:update': CustomEvent<CatalogUpdateEvent>
  /** a peer's catalog was dropped */
  'catalog:expire': CustomEvent<CatalogExpireEvent>
}

export interface Catalog extends TypedEventTarget<CatalogEvents> {
  readonly topic: string
  /** false when we hold no catalog from the peer or its filter says no */
  mayHave: (peerId: PeerId | string, key: string) => boolean
  /** peers whose catalog may hold `key`, fewest false positives first */
  peersWith: (key: string) => PeerId[]
  peers: () => CatalogPeerInfo[]
  /** the peer said yes but did not have the chunk */
  recordFalsePositive: (peerId: PeerId | string) => void
  stats: () => CatalogStats
  /** publish now (normally driven by changes, new subscribers and the period) */
  publish: () => Promise<void>
}

/** libp2p service factory for the catalog; needs a gossipsub service named `pubsub`. */
export function catalog (init: CatalogInit): (components: CatalogComponents) => Catalog {
  return (components) => new CatalogService(components, init)
}
