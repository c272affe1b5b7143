import { peerDiscoverySymbol } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { DIAL_TIMEOUT_MS, REDIAL_BASE_MS, REDIAL_MAX_MS } from './constants.js'
import { InvalidPeerAddressError } from './errors.js'
import type { ComponentLogger, Libp2pEvents, Logger, PeerDiscoveryProvider, PeerId, PeerInfo, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface PeerDialerInit {
  /** multiaddrs dialled at start and redialled with backoff whenever they drop */
  peers?: string[]
  /** dial peers announced by the discovery service registered as `discoveryService` */
  dialDiscovered?: boolean
  /** @default 'mdns' */
  discoveryService?: string
  /** @default 1000 */
  redialBaseMs?: number
  /** @default 60000 */
  redialMaxMs?: number
}

export interface PeerDialerComponents {
  peerId: PeerId
  connectionManager: ConnectionManager
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface StaticPeerStatus {
  address: string
  peerId?: string
  connected: boolean
  failures: number
}

export interface PeerDialer {
  staticPeers: () => StaticPeerStatus[]
}

interface StaticPeer {
  address: Multiaddr
  peerId?: string
  failures: number
  timer?: ReturnType<typeof setTimeout>
  dialling: boolean
}

/**
 * Keeps connections that libp2p 3 would not make by itself: to configured static peers (dialled at
 * start, redialled with exponential backoff after a failure or a drop) and to peers announced by
 * mDNS (libp2p 3 only records them in the peer store).
 */
export class PeerDialerService implements PeerDialer, Startable {
  private readonly components: PeerDialerComponents & Record<string, unknown>
  private readonly log: Logger
  private readonly statics: StaticPeer[]
  private readonly dialDiscovered: boolean
  private readonly discoveryService: string
  private readonly redialBaseMs: number
  private readonly redialMaxMs: number
  private readonly discoveredDials = new Set<string>()
  private discovery?: PeerDiscoveryProvider[typeof peerDiscoverySymbol]
  private shutdown = new AbortController()
  private started = false

  readonly [Symbol.toStringTag] = '@promptmesh/peer-dialer'

  constructor (components: PeerDialerComponents, init: PeerDialerInit = {}) {
    this.components = components as PeerDialerComponents & Record<string, unknown>
    this.log = components.logger.forComponent('promptmesh:network:dialer')
    this.dialDiscovered = init.dialDiscovered ?? true
    this.discoveryService = init.discoveryService ?? 'mdns'
    this.redialBaseMs = init.redialBaseMs ?? REDIAL_BASE_MS
    this.redialMaxMs = init.redialMaxMs ?? REDIAL_MAX_MS
    this.statics = (init.peers ?? []).map((address) => {
      let ma: Multiaddr
      try {
        ma = multiaddr(address)
      } catch (err) {
        throw new InvalidPeerAddressError(`invalid peer address ${JSON.stringify(address)}: ${(err as Error).message}`)
      }
      return { address: ma, peerId: ma.getComponents().findLast((c) => c.name === 'p2p')?.value, failures: 0, dialling: false }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    this.components.events.addEventListener('peer:disconnect', this.onDisconnect)
  }

  async afterStart (): Promise<void> {
    if (!this.started) return
    if (this.dialDiscovered && this.discovery == null) {
      try {
        // optional service: the components proxy throws when it is absent
        const service = this.components[this.discoveryService] as Partial<PeerDiscoveryProvider> | undefined
        this.discovery = service?.[peerDiscoverySymbol]
      } catch {
        this.discovery = undefined
      }
      this.discovery?.addEventListener('peer', this.onDiscovered)
    }
    for (const peer of this.statics) void this.dialStatic(peer)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    this.components.events.removeEventListener('peer:disconnect', this.onDisconnect)
    this.discovery?.removeEventListener('peer', this.onDiscovered)
    this.discovery = undefined
    for (const peer of this.statics) {
      clearTimeout(peer.timer)
      peer.timer = undefined
    }
  }

  staticPeers (): StaticPeerStatus[] {
    return this.statics.map((p) => ({
      address: p.address.toString(),
      peerId: p.peerId,
      connected: p.peerId != null && this.isConnected(p.peerId),
      failures: p.failures
    }))
  }

  private isConnected (peerId: string): boolean {
    return this.components.connectionManager.getConnections().some((c) => c.remotePeer.toString() === peerId && c.status === 'open')
  }

  private async dialStatic (peer: StaticPeer): Promise<void> {
    if (!this.started || peer.dialling) return
    if (peer.peerId != null && this.isConnected(peer.peerId)) return
    peer.dialling = true
    try {
      const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
      const connection = await this.components.connectionManager.openConnection(peer.address, { signal })
      peer.peerId = connection.remotePeer.toString()
      peer.failures = 0
      this.log('connected to static peer %a', peer.address)
    } catch (err) {
      if (!this.started) return
      peer.failures++
      this.log('dialling static peer %a failed (%d): %s', peer.address, peer.failures, (err as Error).message)
      this.scheduleRedial(peer)
    } finally {
      peer.dialling = false
    }
  }

  private scheduleRedial (peer: StaticPeer): void {
    if (!this.started || peer.timer != null) return
    const delay = Math.min(this.redialMaxMs, this.redialBaseMs * 2 ** Math.max(0, peer.failures - 1)) * (0.8 + Math.random() * 0.4)
    peer.timer = setTimeout(() => {
      peer.timer = undefined
      void this.dialStatic(peer)
    }, delay)
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    for (const peer of this.statics) {
      if (peer.peerId === id) {
        this.log('static peer %s dropped, redialling', id)
        this.scheduleRedial(peer)
      }
    }
  }

  private readonly onDiscovered = (evt: CustomEvent<PeerInfo>): void => {
    const { id, multiaddrs } = evt.detail
    const key = id.toString()
    if (!this.started || id.equals(this.components.peerId) || this.discoveredDials.has(key) || this.isConnected(key)) return
    if (multiaddrs.length === 0) return
    this.discoveredDials.add(key)
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
    this.components.connectionManager.openConnection(multiaddrs.map((ma) => ma.encapsulate(`/p2p/${key}`)), { signal })
      .then(() => { this.log('connected to discovered peer %s', key) })
      .catch((err: Error) => { this.log('dialling discovered peer %s failed: %s', key, err.message) })
      .finally(() => { this.discoveredDials.delete(key) })
  }
}

export function peerDialer (init: PeerDialerInit = {}): (components: PeerDialerComponents) => PeerDialer {
  return (components) => new PeerDialerService(components, init)
}
