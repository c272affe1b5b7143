/** Defaults and limits of the testnet. Rates and their sources live in profiles.ts. */

export const DEFAULT_NODES = 4
/** More would not fit the /24 nor this machine; the simulation is for large meshes. */
export const MAX_NODES = 32
export const DEFAULT_QUERIES = 24
/** Tokens generated per query: TTLT needs several. */
export const DEFAULT_MAX_TOKENS = 16
/** Questions per subject when --subjects is not given (one subject per this many queries). */
export const DEFAULT_QUESTIONS_PER_SUBJECT = 6
/** Prompts longer than this are left out (MMLU has 5-shot prompts of up to ~13,000 characters; the context is 4,096 tokens). */
export const DEFAULT_MAX_PROMPT_CHARS = 8_000
export const DEFAULT_SHAPE = 'gemma3-270m'
/**
 * Evaluation threads per node. One: N nodes share this machine's cores, and llama.cpp threads that
 * wait at a barrier for a preempted sibling made timings erratic (several × slower) under load.
 */
export const DEFAULT_THREADS = 1
export const STRATEGIES = ['none', 'local', 'broadcast', 'catalog'] as const
export type Strategy = typeof STRATEGIES[number]

/** Subnet of the bridge; addresses exist only inside the testnet's namespaces. */
export const SUBNET_PREFIX = '10.77.0.'
export const SUBNET_BITS = 24
/** Inside each node namespace: the node's API (reached through a unix-socket relay) and libp2p port. */
export const NODE_API_PORT = 8080
export const NODE_P2P_PORT = 4001
/** Name prefix of everything the testnet creates (namespaces, cgroups, temp dirs). */
export const RESOURCE_PREFIX = 'pmtn'

/** tbf: a bucket of at least a few MTUs (tbf drops packets larger than its burst) and a queue of this many ms. */
export const TBF_BURST = '32kb'
export const TBF_LATENCY = '100ms'

/** cgroup CPU period; the quota is a share of it. */
export const CPU_PERIOD_US = 100_000
/** The kernel refuses quotas below 1 ms. */
export const MIN_QUOTA_US = 1_000
/** What all busy throttled nodes together may use (cores), so that their quotas fit the machine. */
export const CPU_BUDGET_FRACTION = 0.9
/**
 * Nodes busy at once: queries run one at a time, so the asking node and the node serving it (under
 * broadcast all peers answer, but a peer without the chunks answers in microseconds). The quota of
 * each node may be up to the budget divided by this, whatever the mesh size.
 */
export const BUSY_NODES = 2

/**
 * Calibration: prompt length, iterations, and how close to the target rate is close enough: within 5 %,
 * since the baseline every reduction is measured against runs at this rate (at 10 %, runs landed at 46.7
 * and 54.4 tok/s for a 50 tok/s profile, moving the `none` TTFT by 15 %).
 */
export const CALIBRATION_PROMPT_CHARS = 1_200
export const CALIBRATION_MAX_ITERATIONS = 6
export const CALIBRATION_TOLERANCE = 0.05
export const CALIBRATION_MAX_TOKENS = 8

/** Waiting for nodes: start, mDNS mesh, catalogs, a query. */
export const NODE_START_TIMEOUT_MS = 180_000
export const MESH_TIMEOUT_MS = 90_000
export const QUERY_TIMEOUT_MS = 30 * 60_000
export const STOP_TIMEOUT_MS = 15_000
/** After a query under `catalog`, wait at most this long for its new catalog to reach every peer (periodic republish is 10 s). */
export const DEFAULT_SETTLE_MS = 15_000
export const POLL_MS = 250

/** Simulation: pause between queries, gossip delay, catalog message overhead besides the filter. */
export const SIM_QUERY_GAP_MS = 1_000
export const SIM_GOSSIP_DELAY_MS = 50
export const SIM_CATALOG_HEADER_BYTES = 96
/** Simulated meshes: default queries per node. */
export const SIM_QUERIES_PER_NODE = 4
export const SIM_MAX_NODES = 5_000
