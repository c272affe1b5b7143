/** Where a node listens unless told otherwise. */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0']
/** File under the data directory holding the node's Ed25519 private key (libp2p protobuf encoding). */
export const PEER_KEY_FILE = 'peer-key'

/** Static peers: first redial delay after a drop or failed dial, doubled per failure up to the max (±20 % jitter). */
export const REDIAL_BASE_MS = 1_000
export const REDIAL_MAX_MS = 60_000
/** Bound on one dial attempt. */
export const DIAL_TIMEOUT_MS = 10_000

/** mDNS query interval (the @libp2p/mdns default is 10 s). */
export const DEFAULT_MDNS_INTERVAL_MS = 10_000

/** MeshFetcher: total deadline of one fetchContinuation. */
export const DEFAULT_FETCH_TIMEOUT_MS = 10_000
/** MeshFetcher: keys asked of one peer in one request (a run longer than this is split). */
export const DEFAULT_FETCH_CHUNKS_PER_REQUEST = 64

/** PeerGuard: a peer that was cut off is refused (inbound connections and dials) this long. */
export const DEFAULT_BAN_MS = 60_000
/** PeerGuard: faults (malformed input, a chunk failing verification) tolerated within the window; one more cuts the peer off. */
export const DEFAULT_MAX_FAULTS = 2
export const DEFAULT_FAULT_WINDOW_MS = 60_000
/** PeerGuard: peers whose budgets and offences are remembered (the oldest innocent ones are forgotten first). */
export const MAX_GUARDED_PEERS = 4_096
/** Connections kept at most (libp2p's default is 300): a shelf of small boards, not the Internet. */
export const DEFAULT_MAX_CONNECTIONS = 100
/** Swarm key file format (the go-ipfs/libp2p `swarm.key`): these two lines, then 64 hex digits. */
export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
export const SWARM_KEY_ENCODING = '/base16/'
