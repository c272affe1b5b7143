import '../polyfill.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { catalog, catalogTopic, DEFAULT_CATALOG_BURST, DEFAULT_CATALOGS_PER_SECOND, MAX_PUBSUB_MESSAGE_BYTES } from '../catalog/index.js'
import { DEFAULT_REQUEST_BURST, DEFAULT_REQUESTS_PER_SECOND, kvTransfer } from '../transfer/index.js'
import { DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MDNS_INTERVAL_MS } from './constants.js'
import { peerDialer } from './dialer.js'
import { MeshFetcher } from './fetcher.js'
import { loadOrCreatePeerKey } from './identity.js'
import { PeerGuard } from './peer-guard.js'
import { parseSwarmKey } from './swarm-key.js'
import type { MeshNode, MeshNodeInit, MeshServices } from './index.js'
import type { Catalog } from '../catalog/index.js'
import type { KvTransfer } from '../transfer/index.js'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

class MeshNodeImpl implements MeshNode {
  readonly libp2p: Libp2p<MeshServices>
  readonly fetcher: MeshFetcher
  readonly guard: PeerGuard
  readonly privateMesh: boolean

  constructor (libp2p: Libp2p<MeshServices>, fetcher: MeshFetcher, guard: PeerGuard, isPrivate: boolean) {
    this.libp2p = libp2p
    this.fetcher = fetcher
    this.guard = guard
    this.privateMesh = isPrivate
  }

  get peerId (): PeerId { return this.libp2p.peerId }
  get catalog (): Catalog { return this.libp2p.services.catalog }
  get transfer (): KvTransfer { return this.libp2p.services.kv }

  async start (): Promise<void> { await this.libp2p.start() }
  async stop (): Promise<void> { await this.libp2p.stop() }
  getMultiaddrs (): Multiaddr[] { return this.libp2p.getMultiaddrs() }
  connectedPeers (): PeerId[] { return this.libp2p.getPeers() }
}

/**
 * A promptmesh node: libp2p 3 over TCP (+ the swarm key's private-network protector when given) +
 * noise + yamux, identify, mDNS (unless `mdns: false`), static peers, gossipsub tuned for a handful of
 * peers (signed messages only, our catalog topic only), the catalog and `/promptmesh/kv/1.0.0`, with
 * a PeerGuard that rate-limits peers and cuts off those that misbehave.
 */
export async function createMeshNode (init: MeshNodeInit): Promise<MeshNode> {
  const privateKey: PrivateKey | undefined = init.privateKey ?? (init.dataDir != null ? await loadOrCreatePeerKey(init.dataDir) : undefined)
  // checked here, so that a malformed key is a clear error instead of a mesh of one
  const swarmKey = init.swarmKey != null ? parseSwarmKey(init.swarmKey) : undefined
  const useMdns = init.mdns !== false
  const guard = new PeerGuard({
    ...init.guard,
    rates: {
      'kv-request': { perSecond: DEFAULT_REQUESTS_PER_SECOND, burst: DEFAULT_REQUEST_BURST },
      catalog: { perSecond: DEFAULT_CATALOGS_PER_SECOND, burst: DEFAULT_CATALOG_BURST },
      ...init.guard?.rates
    },
    logger: init.logger
  })
  const libp2p = await createLibp2p({
    privateKey,
    start: false,
    logger: init.logger,
    addresses: {
      listen: init.listen ?? DEFAULT_LISTEN,
      announce: init.announce
    },
    transports: [tcp()],
    // a private mesh: every connection is encrypted with the swarm key before anything else is said,
    // so a node without it cannot even complete the noise handshake
    connectionProtector: swarmKey != null ? preSharedKey({ psk: swarmKey }) : undefined,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: guard.gater(),
    connectionManager: { maxConnections: init.maxConnections ?? DEFAULT_MAX_CONNECTIONS },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        // a shelf of Pis: few peers, so send every message to every subscriber and never
        // fail a publish because subscriptions have not arrived yet
        allowPublishToZeroTopicPeers: true,
        floodPublish: true,
        emitSelf: false,
        ignoreDuplicatePublishError: true,
        // every message signed by its author and checked against its `from` (the default, stated)
        globalSignaturePolicy: 'StrictSign',
        // the catalog topic is the only one this node speaks: others are neither tracked nor relayed
        allowedTopics: [catalogTopic(init.modelFingerprint)],
        maxInboundDataLength: MAX_PUBSUB_MESSAGE_BYTES
      }),
      catalog: catalog({ ...init.catalog, modelFingerprint: init.modelFingerprint, provider: init.store, policy: guard }),
      kv: kvTransfer({ ...init.transfer, modelFingerprint: init.modelFingerprint, provider: init.store, policy: guard }),
      ...(useMdns ? { mdns: mdns({ interval: init.mdnsIntervalMs ?? DEFAULT_MDNS_INTERVAL_MS }) } : {}),
      dialer: peerDialer({ ...init.dialer, peers: init.peers, dialDiscovered: useMdns, discoveryService: 'mdns' })
    }
  }) as unknown as Libp2p<MeshServices>
  guard.setHangUp(async (peer) => { await libp2p.hangUp(peer) })
  const fetcher = new MeshFetcher({
    ...init.fetcher,
    policy: guard,
    catalog: libp2p.services.catalog,
    transfer: libp2p.services.kv,
    peers: () => libp2p.getPeers(),
    logger: libp2p.logger
  })
  const node = new MeshNodeImpl(libp2p, fetcher, guard, swarmKey != null)
  if (init.start !== false) await node.start()
  return node
}
