/**
 * Hostile peers for the hardening tests, run as child processes inside a network namespace next to
 * real `promptmesh start` nodes. Argument: JSON `AttackerConfig`. Prints JSON lines on stdout
 * (`{"event": ...}`); runs until its work is done (`outsider`, `flooder`) or stdin closes (`forger`).
 *
 * - `outsider`: a node without the mesh's swarm key (or with another one) dials every peer and
 *   asks for a chunk; reports what got through (nothing should).
 * - `forger`: a member of the mesh (it has the key) that publishes a catalog naming a victim as its
 *   publisher, speaks gossipsub directly with messages claiming to be from the victim (signed with
 *   its own key, with and without its key attached, and unsigned), then lies in its own name: an
 *   all-ones catalog (it claims every chunk) and random bytes for every chunk it is asked for (with a
 *   truthful SHA-256 of those bytes, so the transfer's check passes and only the key check can catch it).
 * - `flooder`: a member that sends kv requests for made-up keys as fast as it can, many at once
 *   (and, with `garbageEvery`, garbage frames among them), until it is cut off.
 */
import '../../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { RPC } from '@libp2p/gossipsub/message'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { CatalogMessage } from '../../src/catalog/index.js'
import { createMeshNode } from '../../src/network/index.js'
import { encodeFrame, KV_PROTOCOL, KvHeader, KvRequest, MAX_HEADER_BYTES } from '../../src/transfer/index.js'
import { readFirstFrame } from './helpers.js'
import type { MeshNode } from '../../src/network/index.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export interface AttackerConfig {
  mode: 'outsider' | 'forger' | 'flooder'
  fingerprint: string
  /** multiaddrs (with /p2p/) of the nodes to attack */
  peers: string[]
  /** the swarm key file's text, when the attacker has one */
  swarmKey?: string
  /** forger: the peer it pretends to be */
  victim?: string
  /** flooder: requests to send at most */
  count?: number
  /** flooder: every n-th request is garbage instead (0: none, only well-formed requests for made-up keys) */
  garbageEvery?: number
}

const config = JSON.parse(process.argv[2] ?? '{}') as AttackerConfig
const say = (event: string, detail: Record<string, unknown> = {}): void => { process.stdout.write(`${JSON.stringify({ event, ...detail })}\n`) }

/** A store that holds nothing but serves random bytes for any key (the forger's lie). */
class LyingStore extends EventEmitter<{ added: [string], removed: [string] }> {
  served = 0
  keys (): IterableIterator<string> { return new Map<string, string>().keys() }
  get count (): number { return 0 }
  async get (): Promise<Uint8Array> {
    this.served++
    return randomBytes(24_000)
  }
}

async function node (privateKey: PrivateKey, store = new LyingStore()): Promise<MeshNode> {
  return await createMeshNode({
    modelFingerprint: config.fingerprint,
    store,
    privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    peers: config.peers,
    swarmKey: config.swarmKey != null ? new TextEncoder().encode(config.swarmKey) : undefined
  })
}

const peerIds = config.peers.map((a) => peerIdFromString(multiaddr(a).getComponents().findLast((c) => c.name === 'p2p')?.value ?? ''))

async function until (condition: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!condition()) {
    if (Date.now() > end) return false
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return true
}

async function outsider (): Promise<void> {
  const n = await node(await generateKeyPair('Ed25519'))
  const dialed: string[] = []
  const errors: string[] = []
  for (const address of config.peers) {
    try {
      await n.libp2p.dial(multiaddr(address), { signal: AbortSignal.timeout(5_000) })
      dialed.push(address)
    } catch (err) {
      errors.push((err as Error).name)
    }
  }
  let fetched = 0
  for (const peer of peerIds) {
    try {
      for await (const answer of n.transfer.fetch(peer, [randomBytes(32).toString('hex')], { signal: AbortSignal.timeout(5_000) })) if (answer != null) fetched++
    } catch (err) {
      errors.push((err as Error).name)
    }
  }
  say('outsider', { peerId: n.peerId.toString(), dialed, connected: n.connectedPeers().length, fetched, errors })
  await n.stop()
}

/** A gossipsub message as an attacker builds it: `from` any peer id, signed with `key` (or not at all). */
async function gossip (topic: string, from: PeerId, key: PrivateKey | undefined, data: Uint8Array, attachKey: boolean): Promise<RPC.Message> {
  const seqno = new Uint8Array(8)
  new DataView(seqno.buffer).setBigUint64(0, BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6)))
  const unsigned: RPC.Message = { from: from.toMultihash().bytes, data, seqno, topic }
  if (key == null) return unsigned
  const signature = await key.sign(Buffer.concat([Buffer.from('libp2p-pubsub:'), RPC.Message.encode(unsigned)]))
  return { ...unsigned, signature, key: attachKey ? publicKeyToProtobuf(key.publicKey) : undefined }
}

function allOnes (publisher: PeerId, seq: number): Uint8Array {
  return CatalogMessage.encode({
    fingerprint: config.fingerprint, seq, entries: 1_000_000, bits: 8192, hashes: 7, seed: 0x504d4331, filter: new Uint8Array(1024).fill(0xff),
    publisher: publisher.toMultihash().bytes as Uint8Array<ArrayBuffer>
  })
}

async function forger (): Promise<void> {
  const key = await generateKeyPair('Ed25519')
  const store = new LyingStore()
  const n = await node(key, store)
  const victim = peerIdFromString(config.victim ?? '')
  const topic = n.catalog.topic
  const ready = await until(() => peerIds.every((p) => n.connectedPeers().some((c) => c.equals(p))) && n.catalog.peers().length >= peerIds.length, 30_000)
  // 1. a catalog naming the victim as publisher, signed by us
  await n.libp2p.services.pubsub.publish(topic, allOnes(victim, Date.now() * 2)).catch(() => {})
  // 2. gossipsub messages claiming to come from the victim, sent straight to every peer
  let forgedSent = 0
  for (const peer of peerIds) {
    try {
      const stream = await n.libp2p.dialProtocol(peer, '/meshsub/1.2.0', { signal: AbortSignal.timeout(5_000) })
      const messages = [
        await gossip(topic, victim, key, allOnes(victim, Date.now() * 2 + 1), true),
        await gossip(topic, victim, key, allOnes(victim, Date.now() * 2 + 2), false),
        await gossip(topic, victim, undefined, allOnes(victim, Date.now() * 2 + 3), false)
      ]
      for (const message of messages) {
        stream.send(encodeFrame(RPC.encode({ subscriptions: [], messages: [message] })))
        forgedSent++
      }
    } catch (err) {
      say('error', { stage: 'forge', message: (err as Error).message })
    }
  }
  // 3. lie in our own name: we hold everything (seq far ahead of our own periodic, honest catalogs)
  await n.libp2p.services.pubsub.publish(topic, allOnes(n.peerId, Date.now() * 4)).catch(() => {})
  say('forger', { peerId: n.peerId.toString(), ready, forgedSent })
  const timer = setInterval(() => { say('status', { connected: n.connectedPeers().map(String), served: store.served }) }, 500)
  const stop = (): void => {
    clearInterval(timer)
    void n.stop().finally(() => process.exit(0))
  }
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
}

async function flooder (): Promise<void> {
  const n = await node(await generateKeyPair('Ed25519'))
  const target = peerIds[0] as PeerId
  await until(() => n.connectedPeers().some((c) => c.equals(target)), 30_000)
  const statuses: Record<string, number> = {}
  let sent = 0
  let refused = 0
  const count = config.count ?? 500
  const one = async (): Promise<void> => {
    const keys = [randomBytes(32)] as Array<Uint8Array<ArrayBuffer>>
    const every = config.garbageEvery ?? 0
    const bytes = every > 0 && sent % every === every - 1 ? randomBytes(64) : encodeFrame(KvRequest.encode({ fingerprint: config.fingerprint, keys })).subarray()
    sent++
    try {
      const stream = await n.libp2p.dialProtocol(target, KV_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
      stream.send(bytes)
      await stream.close()
      const frame = await readFirstFrame(stream, MAX_HEADER_BYTES, AbortSignal.timeout(5_000))
      const status = frame == null ? 'none' : KvHeader.decode(frame).status
      statuses[status] = (statuses[status] ?? 0) + 1
    } catch {
      refused++
    }
  }
  // eight at a time (the streams a connection may have open on the protocol: more are reset by
  // libp2p itself), until the count or until nothing gets through any more
  while (sent < count && refused < 50) await Promise.all(Array.from({ length: 8 }, one))
  // a connection the target accepted, then dropped as soon as it knew who we are, may linger a moment
  const dropped = await until(() => !n.connectedPeers().some((c) => c.equals(target)), 5_000)
  say('flooder', { peerId: n.peerId.toString(), sent, refused, statuses, connected: !dropped })
  await n.stop()
}

const modes = { outsider, forger, flooder }
modes[config.mode]().catch((err: Error) => {
  say('error', { message: err.message, name: err.name })
  process.exit(1)
})
