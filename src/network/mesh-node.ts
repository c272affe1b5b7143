import '../polyfill.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { catalog } from '../catalog/index.js'
import { kvTransfer } from '../transfer/index.js'
import { DEFAULT_LISTEN, DEFAULT_MDNS_INTERVAL_MS } from './constants.js'
import { peerDialer } from './dialer.js'
import { MeshFetcher } from './fetcher.js'
import { loadOrCreatePeerKey } from './identity.js'
import type { MeshNode, MeshNodeInit, MeshServices } from './index.js'
import type { Catalog } from '../catalog/index.js'
import type { KvTransfer } from '../transfer/index.js'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

class MeshNodeImpl implements MeshNode {
  readonly libp2p: Libp2p<MeshServices>
  readonly fetcher: MeshFetcher

  constructor (libp2p: Libp2p<MeshServices>, fetcher: MeshFetcher) {
    this.libp2p = libp2p
    this.fetcher = fetcher
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
 * A promptmesh node: libp2p 3 over TCP + noise + yamux, identify, mDNS (unless `mdns: false`),
 * static peers, gossipsub tuned for a handful of peers, the catalog and `/promptmesh/kv/1.0.0`.
 */
export async function createMeshNode (init: MeshNodeInit): Promise<MeshNode> {
  const privateKey: PrivateKey | undefined = init.privateKey ?? (init.dataDir != null ? await loadOrCreatePeerKey(init.dataDir) : undefined)
  const useMdns = init.mdns !== false
  const libp2p = await createLibp2p({
    privateKey,
    start: false,
    logger: init.logger,
    addresses: {
      listen: init.listen ?? DEFAULT_LISTEN,
      announce: init.announce
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        // a shelf of Pis: few peers, so send every message to every subscriber and never
        // fail a publish because subscriptions have not arrived yet
        allowPublishToZeroTopicPeers: true,
        floodPublish: true,
        emitSelf: false,
        ignoreDuplicatePublishError: true
      }),
      catalog: catalog({ ...init.catalog, modelFingerprint: init.modelFingerprint, provider: init.store }),
      kv: kvTransfer({ ...init.transfer, modelFingerprint: init.modelFingerprint, provider: init.store }),
      ...(useMdns ? { mdns: mdns({ interval: init.mdnsIntervalMs ?? DEFAULT_MDNS_INTERVAL_MS }) } : {}),
      dialer: peerDialer({ ...init.dialer, peers: init.peers, dialDiscovered: useMdns, discoveryService: 'mdns' })
    }
  }) as unknown as Libp2p<MeshServices>
  const fetcher = new MeshFetcher({
    ...init.fetcher,
    catalog: libp2p.services.catalog,
    transfer: libp2p.services.kv,
    peers: () => libp2p.getPeers(),
    logger: libp2p.logger
  })
  const node = new MeshNodeImpl(libp2p, fetcher)
  if (init.start !== false) await node.start()
  return node
}
