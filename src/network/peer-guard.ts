import { InvalidParametersError } from '@libp2p/interface'
import { DEFAULT_BAN_MS, DEFAULT_FAULT_WINDOW_MS, DEFAULT_MAX_FAULTS, MAX_GUARDED_PEERS } from './constants.js'
import type { ComponentLogger, ConnectionGater, Logger, PeerId } from '@libp2p/interface'

/** `limit`: exceeded a bound no honest peer exceeds (cut off at once); `fault`: malformed or unverifiable input (tolerated a few times). */
export type Offence = 'limit' | 'fault'

/** A token bucket: `perSecond` tokens a second, holding at most `burst`. */
export interface RateLimit {
  perSecond: number
  burst: number
}

export interface PeerGuardInit {
  /**
   * how long a peer that was cut off is refused (inbound connections and dials); 0: cut off only
   * @default 60000
   */
  banMs?: number
  /**
   * faults tolerated within `faultWindowMs`; the next one cuts the peer off
   * @default 2
   */
  maxFaults?: number
  /** @default 60000 */
  faultWindowMs?: number
  /** request budgets per kind of request (`admit(peer, kind)`); kinds without one are unlimited */
  rates?: Record<string, RateLimit>
  logger?: ComponentLogger
  /** clock, for tests */
  now?: () => number
}

export interface BannedPeer {
  peerId: string
  reason: string
  /** ms left */
  remainingMs: number
}

export interface PeerGuardStats {
  /** peers cut off (connections closed, refused for `banMs`) */
  cutOff: number
  /** peers refused right now */
  banned: number
  /** offences reported by the services */
  limitOffences: number
  faultOffences: number
  /** requests refused because a peer's budget was spent */
  rateLimited: number
  /** connections and dials refused because the peer is banned */
  refusedConnections: number
}

interface Bucket { tokens: number, at: number }

interface PeerRecord {
  buckets: Map<string, Bucket>
  faults: number[]
  bannedUntil: number
  reason: string
}

/**
 * The node's answer to peers that misbehave: per-peer token buckets (`admit`), a record of offences
 * (`report`), and cutting a peer off — closing its connections and refusing it (connection gater) for
 * `banMs`. The services report what they see (a kv request over the rate, a frame over its limit, a
 * forged or oversized catalog, a chunk that fails verification); the guard decides.
 *
 * Peers are known by id: a peer can make a new id at will, so in an open mesh this only slows an
 * attacker down; a private mesh (swarm key) is what keeps strangers out. No timers: buckets refill
 * and bans expire lazily, and the table is bounded (MAX_GUARDED_PEERS, oldest innocent entries first).
 */
export class PeerGuard {
  private readonly banMs: number
  private readonly maxFaults: number
  private readonly faultWindowMs: number
  private readonly rates: Map<string, RateLimit>
  private readonly now: () => number
  private readonly log?: Logger
  private readonly peers = new Map<string, PeerRecord>()
  private hangUp?: (peer: PeerId) => Promise<void>
  private readonly counters = { cutOff: 0, limitOffences: 0, faultOffences: 0, rateLimited: 0, refusedConnections: 0 }

  constructor (init: PeerGuardInit = {}) {
    this.banMs = init.banMs ?? DEFAULT_BAN_MS
    this.maxFaults = init.maxFaults ?? DEFAULT_MAX_FAULTS
    this.faultWindowMs = init.faultWindowMs ?? DEFAULT_FAULT_WINDOW_MS
    this.rates = new Map(Object.entries(init.rates ?? {}))
    this.now = init.now ?? Date.now
    this.log = init.logger?.forComponent('promptmesh:network:guard')
    if (!(this.banMs >= 0)) throw new InvalidParametersError('banMs must be ≥ 0')
    if (!Number.isInteger(this.maxFaults) || this.maxFaults < 0) throw new InvalidParametersError('maxFaults must be an integer ≥ 0')
    for (const [kind, rate] of this.rates) {
      if (!(rate.perSecond > 0) || !(rate.burst >= 1)) throw new InvalidParametersError(`rate of ${kind}: perSecond must be > 0 and burst ≥ 1`)
    }
  }

  /** How to close a peer's connections (the node sets it once libp2p exists). */
  setHangUp (hangUp: (peer: PeerId) => Promise<void>): void {
    this.hangUp = hangUp
  }

  /** Takes one `kind` request from the peer's budget; false when it is spent or the peer is banned. */
  admit (peer: PeerId, kind: string): boolean {
    if (this.isBanned(peer)) return false
    const rate = this.rates.get(kind)
    if (rate == null) return true
    const now = this.now()
    const record = this.record(peer.toString())
    let bucket = record.buckets.get(kind)
    if (bucket == null) {
      bucket = { tokens: rate.burst, at: now }
      record.buckets.set(kind, bucket)
    }
    bucket.tokens = Math.min(rate.burst, bucket.tokens + (now - bucket.at) * rate.perSecond / 1000)
    bucket.at = now
    if (bucket.tokens < 1) {
      this.counters.rateLimited++
      return false
    }
    bucket.tokens -= 1
    return true
  }

  /** A service saw the peer misbehave. */
  report (peer: PeerId, offence: Offence, reason: string): void {
    const id = peer.toString()
    if (offence === 'limit') {
      this.counters.limitOffences++
      this.cutOff(peer, reason)
      return
    }
    this.counters.faultOffences++
    const now = this.now()
    const record = this.record(id)
    record.faults = record.faults.filter((t) => now - t < this.faultWindowMs)
    record.faults.push(now)
    if (record.faults.length > this.maxFaults) this.cutOff(peer, `${record.faults.length} faults within ${this.faultWindowMs} ms, the last: ${reason}`)
    else this.log?.('fault %d of %s: %s', record.faults.length, id, reason)
  }

  isBanned (peer: PeerId | string): boolean {
    const record = this.peers.get(peer.toString())
    return record != null && record.bannedUntil > this.now()
  }

  /** Peers refused right now. */
  banned (): BannedPeer[] {
    const now = this.now()
    return [...this.peers.entries()]
      .filter(([, r]) => r.bannedUntil > now)
      .map(([peerId, r]) => ({ peerId, reason: r.reason, remainingMs: r.bannedUntil - now }))
  }

  /** Lifts a ban (operators, tests). */
  pardon (peer: PeerId | string): void {
    const record = this.peers.get(peer.toString())
    if (record == null) return
    record.bannedUntil = 0
    record.faults = []
  }

  stats (): PeerGuardStats {
    return { ...this.counters, banned: this.banned().length }
  }

  /** libp2p connection gater hooks: banned peers are neither dialled nor accepted. */
  gater (): ConnectionGater {
    const deny = (peer: PeerId): boolean => {
      if (!this.isBanned(peer)) return false
      this.counters.refusedConnections++
      return true
    }
    return {
      denyDialPeer: deny,
      denyInboundEncryptedConnection: deny,
      denyOutboundEncryptedConnection: deny
    }
  }

  private cutOff (peer: PeerId, reason: string): void {
    const id = peer.toString()
    const record = this.record(id)
    const wasBanned = record.bannedUntil > this.now()
    record.bannedUntil = Math.max(record.bannedUntil, this.now() + this.banMs)
    record.reason = reason
    record.faults = []
    if (!wasBanned) {
      this.counters.cutOff++
      this.log?.('cutting off %s for %d ms: %s', id, this.banMs, reason)
    }
    this.hangUp?.(peer).catch((err: Error) => { this.log?.('closing connections to %s failed: %s', id, err.message) })
  }

  private record (id: string): PeerRecord {
    let record = this.peers.get(id)
    if (record == null) {
      if (this.peers.size >= MAX_GUARDED_PEERS) this.prune()
      record = { buckets: new Map(), faults: [], bannedUntil: 0, reason: '' }
      this.peers.set(id, record)
    }
    return record
  }

  /** Forgets the oldest entries that are not banned (their buckets restart full, their faults are forgiven). */
  private prune (): void {
    const now = this.now()
    for (const [id, r] of this.peers) {
      if (this.peers.size < MAX_GUARDED_PEERS * 0.9) break
      if (r.bannedUntil <= now) this.peers.delete(id)
    }
    // all banned: drop the oldest bans rather than grow without bound
    for (const id of this.peers.keys()) {
      if (this.peers.size < MAX_GUARDED_PEERS) break
      this.peers.delete(id)
    }
  }
}
