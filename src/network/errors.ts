/** The peer key file exists but cannot be used (unreadable or not a libp2p private key). */
export class PeerKeyError extends Error {
  static override name = 'PeerKeyError'
  override name = 'PeerKeyError'
}

/** A configured static peer is not a valid multiaddr. */
export class InvalidPeerAddressError extends Error {
  static override name = 'InvalidPeerAddressError'
  override name = 'InvalidPeerAddressError'
}

/** A swarm key (pre-shared key of a private mesh) is missing, unreadable or not in the `swarm.key` format. */
export class SwarmKeyError extends Error {
  static override name = 'SwarmKeyError'
  override name = 'SwarmKeyError'
}
