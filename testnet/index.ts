/**
 * promptmesh testnet: a multi-node mesh on one machine with Pi-class compute and Wi-Fi-class links,
 * replaying a workload under each caching strategy and reporting TTFT/TTLT side by side; and a
 * simulation for meshes too large for one machine.
 *
 * The testnet drives real `promptmesh start` processes from outside (CLI flags, HTTP, signals) and
 * never imports node internals; it uses only pure helpers (the MMLU loader, the synthetic model
 * writer, the Bloom filter code for the simulation).
 *
 * @example
 * ```ts
 * const workload = await buildWorkload({ mmlu: 'data/mmlu', queries: 24, nodes: 4 })
 * const { report } = await runTestnet({
 *   nodes: 4, profile: resolveProfile('pi-zero-2w'), workload, strategies: ['none', 'catalog'],
 *   model: { path: await synthesizedModel('gemma3-270m'), label: 'gemma3-270m' }, maxTokens: 16,
 *   out: 'testnet-out', signal: AbortSignal.timeout(3_600_000)
 * })
 * console.log(report.summary.catalog?.ttftReductionPct)
 * ```
 */
export { runTestnet, calibrateModel } from './runner.js'
export type { TestnetInit, TestnetResult, TestnetEvent, CalibrationInit } from './runner.js'
export { runSimulation, calibrationFromReport, timingsFrom } from './sim-runner.js'
export type { SimulationInit } from './sim-runner.js'
export { simulate } from './simulate.js'
export type { SimOptions, SimResult, SimTimings } from './simulate.js'
export { buildWorkload } from './workload.js'
export type { Workload, WorkloadQuery, WorkloadOptions } from './workload.js'
export { PROFILES, PROFILE_NAMES, isProfileName, resolveProfile } from './profiles.js'
export type { Profile, ProfileName } from './profiles.js'
export { summarize, stats, quantile } from './summary.js'
export type { QueryRecord, Summary, StrategySummary, ExactMatches, MeshTotals } from './summary.js'
export { writeReport, renderMarkdown, resultRows, roundRows, textTable, verdicts } from './report.js'
export type { TestnetReport, RunHeader, RunMode } from './report.js'
export type { Calibration } from './calibrate.js'
export { Progress } from './progress.js'
export { STRATEGIES, DEFAULT_NODES, DEFAULT_QUERIES, DEFAULT_MAX_TOKENS, DEFAULT_SHAPE, MAX_NODES, SIM_QUERIES_PER_NODE, SIM_MAX_NODES } from './constants.js'
export type { Strategy } from './constants.js'
export { TestnetSetupError, TestnetNodeError, CalibrationError, WorkloadError } from './errors.js'
