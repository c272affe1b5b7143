import { TopicValidatorResult } from '@libp2p/gossipsub'
import { InvalidParametersError, serviceDependencies, TypedEventEmitter } from '@libp2p/interface'
import { CatalogMessage } from '../../protocols/catalog.js'
import { createFilter, filterBytes, filterFromBytes, shapeFor } from './bloom.js'
import {
  CATALOG_SEED, CATALOG_TOPIC_PREFIX, CHANGE_DEBOUNCE_MS, DEFAULT_CHANGE_THRESHOLD, DEFAULT_MAX_CATALOG_PEERS, DEFAULT_MAX_FILTER_BYTES,
  DEFAULT_MAX_TOTAL_FILTER_BYTES, DEFAULT_PUBLISH_INTERVAL_MS, EXPIRY_PERIODS, MAX_HASHES, MIN_BITS, REBUILD_BATCH, SUBSCRIBE_DEBOUNCE_MS
} from './constants.js'
import { InvalidCatalogError } from './errors.js'
import type { KeyFilter, FilterShape } from './bloom.js'
import type {
  Catalog, CatalogComponents, CatalogEvents, CatalogExpireEvent, CatalogInit, CatalogKeyProvider, CatalogOffence, CatalogPeerInfo,
  CatalogPeerPolicy, CatalogStats
} from './index.js'
import type { Message, SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Logger, PeerId, Startable } from '@libp2p/interface'

export function catalogTopic (modelFingerprint: string): string {
  return `${CATALOG_TOPIC_PREFIX}${modelFingerprint}`
}

export interface DecodedCatalog {
  seq: number
  entries: number
  shape: FilterShape
  filter: Uint8Array
  /** the publisher's peer id, multihash bytes */
  publisher: Uint8Array
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/**
 * Parses and validates a catalog message; throws InvalidCatalogError on anything unexpected. With
 * `signer` (the gossipsub message's verified `from`), the publisher named in the payload must be it.
 */
export function decodeCatalog (data: Uint8Array, modelFingerprint: string, maxFilterBytes: number, signer?: PeerId): DecodedCatalog {
  let msg: CatalogMessage
  try {
    msg = CatalogMessage.decode(data)
  } catch (err) {
    throw new InvalidCatalogError(`undecodable: ${(err as Error)?.message ?? String(err)}`)
  }
  if (msg.fingerprint !== modelFingerprint) throw new InvalidCatalogError('fingerprint differs from the topic\'s')
  if (msg.publisher.byteLength === 0) throw new InvalidCatalogError('no publisher')
  if (signer != null && !sameBytes(msg.publisher, signer.toMultihash().bytes)) throw new InvalidCatalogError('publisher differs from the signer: a catalog republished under another identity')
  if (!Number.isSafeInteger(msg.seq) || msg.seq < 1) throw new InvalidCatalogError(`bad seq ${msg.seq}`)
  if (msg.hashes < 1 || msg.hashes > MAX_HASHES) throw new InvalidCatalogError(`bad hash count ${msg.hashes}`)
  if (msg.bits < MIN_BITS || msg.bits % 8 !== 0) throw new InvalidCatalogError(`bad filter size ${msg.bits} bits`)
  if (msg.bits / 8 > maxFilterBytes) throw new InvalidCatalogError(`filter of ${msg.bits / 8} bytes exceeds ${maxFilterBytes}`, 'limit')
  if (msg.filter.byteLength !== msg.bits / 8) throw new InvalidCatalogError(`filter holds ${msg.filter.byteLength} bytes, ${msg.bits} bits announced`)
  return { seq: msg.seq, entries: msg.entries, shape: { bits: msg.bits, hashes: msg.hashes, seed: msg.seed }, filter: msg.filter, publisher: msg.publisher }
}

interface PeerCatalog {
  peerId: PeerId
  seq: number
  entries: number
  filter: KeyFilter
  receivedAt: number
  falsePositives: number
}

/**
 * Keeps our Bloom filter in step with the provider (adds are incremental; removals only mark it
 * stale, it is rebuilt before the next publish), publishes it, and holds peers' latest filters.
 */
export class CatalogService extends TypedEventEmitter<CatalogEvents> implements Catalog, Startable {
  readonly topic: string
  private readonly components: CatalogComponents
  private readonly modelFingerprint: string
  private readonly provider: CatalogKeyProvider
  private readonly publishIntervalMs: number
  private readonly expireAfterMs: number
  private readonly changeThreshold: number
  private readonly maxFilterBytes: number
  private readonly maxPeers: number
  private readonly maxTotalFilterBytes: number
  private readonly policy?: CatalogPeerPolicy
  private readonly log: Logger
  private readonly remote = new Map<string, PeerCatalog>()
  /** filter bytes held over all peers */
  private remoteBytes = 0
  /** what the validator decoded, for the 'message' event that follows (the same Message object) */
  private readonly validated = new WeakMap<Message, DecodedCatalog>()

  private filter: KeyFilter
  private capacity: number
  private building?: { filter: KeyFilter }
  /** the filter does not reflect the provider yet (set at start: keys may predate us) */
  private rebuildNeeded = true
  private removalsSinceBuild = 0
  private changesSincePublish = 0
  private entriesAtPublish = 0
  private seq = 0

  private started = false
  private periodTimer?: ReturnType<typeof setInterval>
  private publishTimer?: ReturnType<typeof setTimeout>
  private publishDue = Infinity
  private publishing?: Promise<void>
  private publishAgain = false

  private readonly counters = { published: 0, received: 0, rejected: 0, ignored: 0, falsePositives: 0, stale: 0 }

  readonly [Symbol.toStringTag] = '@promptmesh/catalog'
  readonly [serviceDependencies]: string[] = ['@libp2p/pubsub']

  constructor (components: CatalogComponents, init: CatalogInit) {
    super()
    this.components = components
    this.modelFingerprint = init.modelFingerprint
    this.topic = catalogTopic(init.modelFingerprint)
    this.provider = init.provider
    this.publishIntervalMs = init.publishIntervalMs ?? DEFAULT_PUBLISH_INTERVAL_MS
    this.expireAfterMs = init.expireAfterMs ?? EXPIRY_PERIODS * this.publishIntervalMs
    this.changeThreshold = init.changeThreshold ?? DEFAULT_CHANGE_THRESHOLD
    this.maxFilterBytes = init.maxFilterBytes ?? DEFAULT_MAX_FILTER_BYTES
    this.maxPeers = init.maxPeers ?? DEFAULT_MAX_CATALOG_PEERS
    this.maxTotalFilterBytes = init.maxTotalFilterBytes ?? DEFAULT_MAX_TOTAL_FILTER_BYTES
    this.policy = init.policy
    this.log = components.logger.forComponent('promptmesh:catalog')
    if (!(this.publishIntervalMs > 0)) throw new InvalidParametersError('publishIntervalMs must be positive')
    if (!(this.expireAfterMs > 0)) throw new InvalidParametersError('expireAfterMs must be positive')
    if (!(this.changeThreshold >= 0)) throw new InvalidParametersError('changeThreshold must be ≥ 0')
    const shape = shapeFor(0, CATALOG_SEED)
    this.filter = createFilter(shape)
    this.capacity = shape.capacity
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // the first publish rebuilds from the provider's keys
    this.rebuildNeeded = true
    this.provider.on('added', this.onAdded)
    this.provider.on('removed', this.onRemoved)
    this.components.events.addEventListener('peer:disconnect', this.onPeerDisconnect)
  }

  /** gossipsub refuses subscriptions before it has started, and services start in parallel */
  async afterStart (): Promise<void> {
    if (!this.started || this.periodTimer != null) return
    const pubsub = this.components.pubsub
    pubsub.topicValidators.set(this.topic, this.validate)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.subscribe(this.topic)
    this.periodTimer = setInterval(this.onPeriod, Math.min(this.publishIntervalMs, this.expireAfterMs / EXPIRY_PERIODS))
    this.schedulePublish(0)
  }

  async beforeStop (): Promise<void> {
    const pubsub = this.components.pubsub
    try {
      pubsub.removeEventListener('message', this.onMessage)
      pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
      if (pubsub.topicValidators.get(this.topic) === this.validate) pubsub.topicValidators.delete(this.topic)
      if (pubsub.getTopics().includes(this.topic)) pubsub.unsubscribe(this.topic)
    } catch (err) {
      this.log('unsubscribing failed: %s', (err as Error).message)
    }
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.provider.off('added', this.onAdded)
    this.provider.off('removed', this.onRemoved)
    this.components.events.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    clearInterval(this.periodTimer)
    clearTimeout(this.publishTimer)
    this.periodTimer = undefined
    this.publishTimer = undefined
    this.publishDue = Infinity
    this.publishAgain = false
    await this.publishing?.catch(() => {})
    for (const peer of [...this.remote.values()]) this.expire(peer.peerId.toString(), 'stopped')
  }

  // -------------------------------------------------------------------------------- queries

  mayHave (peerId: PeerId | string, key: string): boolean {
    const peer = this.remote.get(peerId.toString())
    return peer != null && peer.filter.has(key)
  }

  peersWith (key: string): PeerId[] {
    const found: PeerCatalog[] = []
    for (const peer of this.remote.values()) {
      if (peer.filter.has(key)) found.push(peer)
    }
    return found.sort((a, b) => a.falsePositives - b.falsePositives).map((p) => p.peerId)
  }

  peers (): CatalogPeerInfo[] {
    const now = Date.now()
    return [...this.remote.values()].map((p) => ({
      peerId: p.peerId.toString(),
      entries: p.entries,
      seq: p.seq,
      ageMs: now - p.receivedAt,
      falsePositives: p.falsePositives
    }))
  }

  recordFalsePositive (peerId: PeerId | string): void {
    this.counters.falsePositives++
    const peer = this.remote.get(peerId.toString())
    if (peer != null) peer.falsePositives++
  }

  stats (): CatalogStats {
    return { ...this.counters, peers: this.remote.size, entries: this.provider.count, bits: this.filter.size }
  }

  // -------------------------------------------------------------------------------- publishing

  async publish (): Promise<void> {
    if (this.publishing != null) {
      this.publishAgain = true
      return this.publishing
    }
    this.publishing = this.doPublish().finally(() => { this.publishing = undefined })
    await this.publishing
    if (this.publishAgain && this.started) {
      this.publishAgain = false
      await this.publish()
    }
  }

  private async doPublish (): Promise<void> {
    if (this.needsRebuild()) await this.rebuild()
    if (!this.started) return
    // the wall clock seeds the sequence so that a restarted node is not taken for an old one
    this.seq = Math.max(this.seq + 1, Date.now())
    const entries = this.provider.count
    const data = CatalogMessage.encode({
      fingerprint: this.modelFingerprint,
      seq: this.seq,
      entries,
      bits: this.filter.size,
      hashes: this.filter._nbHashes,
      seed: this.filter.seed,
      filter: filterBytes(this.filter),
      publisher: this.components.peerId.toMultihash().bytes
    })
    this.changesSincePublish = 0
    this.entriesAtPublish = entries
    try {
      const result = await this.components.pubsub.publish(this.topic, data)
      this.counters.published++
      this.log.trace('published catalog seq %d (%d keys, %d bytes) to %d peers', this.seq, entries, data.byteLength, result.recipients.length)
    } catch (err) {
      // NoPeersSubscribedToTopic when nobody listens yet (if the router is configured to throw)
      this.log('publishing catalog failed: %s', (err as Error).message)
    }
  }

  private schedulePublish (delayMs: number): void {
    if (!this.started) return
    const due = Date.now() + delayMs
    if (due >= this.publishDue) return
    clearTimeout(this.publishTimer)
    this.publishDue = due
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined
      this.publishDue = Infinity
      this.publish().catch((err) => { this.log.error('publish failed: %e', err) })
    }, delayMs)
  }

  private needsRebuild (): boolean {
    const count = this.provider.count
    return this.rebuildNeeded || count > this.capacity || (this.removalsSinceBuild > 0 && this.removalsSinceBuild >= this.changeThreshold * count)
  }

  /** Rebuilds from the provider's keys in batches, so a large store does not stall the event loop. */
  private async rebuild (): Promise<void> {
    const shape = shapeFor(this.provider.count, CATALOG_SEED)
    const building = { filter: createFilter(shape) }
    this.building = building
    this.rebuildNeeded = false
    this.removalsSinceBuild = 0
    const keys = [...this.provider.keys()]
    for (let i = 0; i < keys.length; i += REBUILD_BATCH) {
      for (const key of keys.slice(i, i + REBUILD_BATCH)) building.filter.add(key)
      if (i + REBUILD_BATCH < keys.length) await new Promise((resolve) => setImmediate(resolve))
      if (this.building !== building) return
    }
    this.filter = building.filter
    this.capacity = shape.capacity
    this.building = undefined
    this.log('rebuilt catalog filter: %d keys, %d bits', keys.length, shape.bits)
  }

  private readonly onAdded = (key: string): void => {
    this.filter.add(key)
    this.building?.filter.add(key)
    this.onChange()
  }

  private readonly onRemoved = (): void => {
    this.removalsSinceBuild++
    this.onChange()
  }

  private onChange (): void {
    this.changesSincePublish++
    if (this.changesSincePublish >= Math.max(1, this.changeThreshold * this.entriesAtPublish)) {
      this.schedulePublish(CHANGE_DEBOUNCE_MS)
    }
  }

  private readonly onPeriod = (): void => {
    const now = Date.now()
    for (const peer of [...this.remote.values()]) {
      if (now - peer.receivedAt > this.expireAfterMs) this.expire(peer.peerId.toString(), 'silent')
    }
    this.schedulePublish(0)
  }

  // -------------------------------------------------------------------------------- receiving

  /** Counts an offence of a peer that sent us something itself, and hands it to the policy. */
  private offend (peer: PeerId, offence: CatalogOffence, reason: string): void {
    this.log('peer %p: %s (%s)', peer, reason, offence)
    try {
      this.policy?.report(peer, offence, reason)
    } catch (err) {
      this.log.error('peer policy failed: %e', err)
    }
  }

  /**
   * Gossipsub topic validator. Malformed, unsigned and forged catalogs are rejected (not delivered,
   * not forwarded); a publisher over its rate is ignored. Gossipsub has already checked the signature
   * (StrictSign) against `from`; the payload must name that same publisher. The peer that sent the
   * message is blamed only when it is the publisher itself: honest relays forward only what they
   * validated, and may run other limits.
   */
  private readonly validate = (propagationSource: PeerId, message: Message): TopicValidatorResult => {
    if (message.type !== 'signed') {
      this.counters.rejected++
      this.log('rejected an unsigned catalog relayed by %p', propagationSource)
      return TopicValidatorResult.Reject
    }
    const direct = message.from.equals(propagationSource)
    if (this.policy != null && !message.from.equals(this.components.peerId) && !this.policy.admit(message.from, 'catalog')) {
      this.counters.ignored++
      if (direct) this.offend(propagationSource, 'limit', 'catalog rate exceeded')
      return TopicValidatorResult.Ignore
    }
    try {
      this.validated.set(message, decodeCatalog(message.data, this.modelFingerprint, this.maxFilterBytes, message.from))
      return TopicValidatorResult.Accept
    } catch (err) {
      this.counters.rejected++
      const e = err as InvalidCatalogError
      this.log('rejected catalog from %p (relayed by %p): %s', message.from, propagationSource, e.message)
      if (direct) this.offend(propagationSource, e.offence ?? 'fault', `invalid catalog: ${e.message}`)
      return TopicValidatorResult.Reject
    }
  }

  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const message = evt.detail
    if (message.topic !== this.topic) return
    try {
      if (message.type !== 'signed') throw new InvalidCatalogError('unsigned message')
      if (message.from.equals(this.components.peerId)) return
      const decoded = this.validated.get(message) ?? decodeCatalog(message.data, this.modelFingerprint, this.maxFilterBytes, message.from)
      this.counters.received++
      const id = message.from.toString()
      const known = this.remote.get(id)
      if (known != null && decoded.seq <= known.seq) {
        this.counters.stale++
        return
      }
      // chunks are asked for over a connection: a catalog of a peer we are not connected to (relayed
      // by others) would only take memory, and is what a flood of made-up identities looks like
      if (this.components.connectionManager.getConnections(message.from).length === 0) {
        this.counters.ignored++
        this.log.trace('ignored catalog of %s: not connected', id)
        return
      }
      const bytes = decoded.filter.byteLength
      const heldBefore = known?.filter._filter.array.byteLength ?? 0
      if ((known == null && this.remote.size >= this.maxPeers) || this.remoteBytes - heldBefore + bytes > this.maxTotalFilterBytes) {
        this.counters.ignored++
        this.log('ignored catalog of %s: holding %d catalogs, %d filter bytes already', id, this.remote.size, this.remoteBytes)
        return
      }
      this.remote.set(id, {
        peerId: message.from,
        seq: decoded.seq,
        entries: decoded.entries,
        filter: filterFromBytes(decoded.shape, decoded.filter),
        receivedAt: Date.now(),
        falsePositives: known?.falsePositives ?? 0
      })
      this.remoteBytes += bytes - heldBefore
      this.log.trace('catalog from %s: seq %d, %d keys', id, decoded.seq, decoded.entries)
      this.safeDispatchEvent('catalog:update', { detail: { peerId: message.from, seq: decoded.seq, entries: decoded.entries } })
    } catch (err) {
      // the validator should have caught it; never let a message throw into gossipsub
      this.counters.rejected++
      this.log('ignored catalog message: %s', (err as Error).message)
    }
  }

  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    for (const subscription of evt.detail.subscriptions) {
      if (subscription.topic !== this.topic) continue
      if (subscription.subscribe) {
        this.schedulePublish(SUBSCRIBE_DEBOUNCE_MS)
      } else {
        // it stopped announcing: what it announced last will go stale
        this.expire(evt.detail.peerId.toString(), 'unsubscribed')
      }
    }
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.expire(evt.detail.toString(), 'disconnect')
  }

  private expire (id: string, reason: CatalogExpireEvent['reason']): void {
    const peer = this.remote.get(id)
    if (peer == null) return
    this.remote.delete(id)
    this.remoteBytes -= peer.filter._filter.array.byteLength
    this.log('dropped catalog of %s (%s)', id, reason)
    this.safeDispatchEvent('catalog:expire', { detail: { peerId: peer.peerId, reason } })
  }
}
