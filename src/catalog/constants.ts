/** Gossipsub topic prefix; the full topic is `/promptmesh/catalog/1/<modelFingerprint>`. */
export const CATALOG_TOPIC_PREFIX = '/promptmesh/catalog/1/'

/** Bloom filter parameters: ≈10 bits per key and 7 hashes give ≈0.8–1 % false positives at capacity. */
export const BITS_PER_KEY = 10
export const HASHES = 7
/** Hashing seed, the same on every node (and carried in every message). */
export const CATALOG_SEED = 0x504d4331 // 'PMC1'
/** Smallest capacity a filter is built for (1,024 keys → 1,280 bytes). */
export const MIN_CAPACITY = 1_024
/** A rebuilt filter has room for this many times the keys held, so growth does not force a rebuild each publish. */
export const CAPACITY_HEADROOM = 1.5
/** Keys added to the filter per event-loop turn when rebuilding (xxhashjs costs ~40 µs a key here). */
export const REBUILD_BATCH = 1_000

/** Default period of unconditional republishing. */
export const DEFAULT_PUBLISH_INTERVAL_MS = 10_000
/** A peer silent for this many periods is dropped. */
export const EXPIRY_PERIODS = 3
/** Publish after this fraction of the keys announced last time were added or removed. */
export const DEFAULT_CHANGE_THRESHOLD = 0.05
/** Changes are coalesced for this long before publishing. */
export const CHANGE_DEBOUNCE_MS = 200
/** A new subscriber gets our catalog after this short delay (coalesces peers arriving together). */
export const SUBSCRIBE_DEBOUNCE_MS = 50

/** Largest filter accepted from a peer: 1 MiB (≈ 840 k keys at 10 bits each); gossipsub drops messages > ~4 MiB anyway. */
export const DEFAULT_MAX_FILTER_BYTES = 1_048_576
/** Largest number of hash functions accepted. */
export const MAX_HASHES = 32
/** Smallest filter accepted, in bits. */
export const MIN_BITS = 8

/** Peers whose catalogs are held at most; a catalog from one more peer is ignored until one expires. */
export const DEFAULT_MAX_CATALOG_PEERS = 128
/** Filter bytes held over all peers at most (a Pi Zero has 512 MB); beyond, new peers' catalogs are ignored. */
export const DEFAULT_MAX_TOTAL_FILTER_BYTES = 32 * 1_048_576
/** Catalogs per second one publisher may send (token bucket: refilled at this rate...). */
export const DEFAULT_CATALOGS_PER_SECOND = 5
/** ...holding up to this many); beyond, its catalogs are ignored and, when it sent them itself, it is cut off. */
export const DEFAULT_CATALOG_BURST = 20
/** Largest gossipsub message accepted: one catalog at the default maxFilterBytes plus headroom for the envelope. */
export const MAX_PUBSUB_MESSAGE_BYTES = 2 * DEFAULT_MAX_FILTER_BYTES
