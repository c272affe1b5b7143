/**
 * Real `promptmesh start` processes, driven from outside: started with CLI flags, reached over HTTP,
 * stopped with SIGTERM. In namespace mode each runs in its node's namespace and is reached through a
 * unix-socket relay; in loopback mode they share this machine's loopback and know each other by
 * static `--peer` addresses (no mDNS outside a namespace).
 */
import { execFileSync, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { NODE_API_PORT, NODE_P2P_PORT, NODE_START_TIMEOUT_MS, STOP_TIMEOUT_MS } from './constants.js'
import { TestnetNodeError } from './errors.js'
import { httpJson, httpRequest } from './http.js'
import type { Cleanup } from './cleanup.js'
import type { Strategy } from './constants.js'
import type { Endpoint } from './http.js'
import type { MeshNetwork } from './network.js'
import type { ChildProcess } from 'node:child_process'
import type { WriteStream } from 'node:fs'

export const BIN = fileURLToPath(new URL('../../bin/promptmesh.js', import.meta.url))
const RELAY = fileURLToPath(new URL('./relay.js', import.meta.url))

export interface NodeHost {
  mode: 'netns' | 'loopback'
  /** namespace mode only */
  network?: MeshNetwork
  /** unix sockets live here */
  workDir: string
  /** each process's stdout and stderr are written here */
  logDir: string
}

export interface NodeStartOptions {
  index: number
  /** names the log file: `<label>.log` */
  label: string
  model: string
  dataDir: string
  strategy: Strategy
  threads: number
  /** tokens per cached block (the node's default when unset) */
  blockTokens?: number
  /** false: the node always fetches what peers hold (`--no-adaptive-fetch`) */
  adaptiveFetch?: boolean
  /** loopback mode: multiaddrs of nodes already running */
  peers?: string[]
}

/** What a completion answered, as the node measured it. */
export interface Completion {
  promptTokens: number
  tokens: number[]
  ttftMs: number
  ttltMs: number
  source: string
  reusedTokens: number
  localTokens: number
  remoteTokens: number
  bytesFetched: number
  peers: string[]
  storedChunks: number
  /** undefined when the node does not report them per query */
  requests?: number
  emptyRequests?: number
  fetchSkipped?: boolean
  timings: Record<string, number>
  /** client-side wall time of the HTTP call */
  wallMs: number
}

export interface NodeStatusDoc {
  peerId: string
  addresses: string[]
  peers: Array<{ peerId: string, connected: boolean, catalog: { entries: number, seq: number, ageMs: number, falsePositives: number } | null }>
  cache: { chunks: number, bytes: number }
}

let clockTicks: number | undefined
function ticksPerSecond (): number {
  if (clockTicks == null) {
    try { clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { clockTicks = 100 }
  }
  return clockTicks
}

export class TestnetNode {
  readonly index: number
  readonly label: string
  readonly strategy: Strategy
  readonly peerId: string
  /** first listen address, with /p2p/<id> */
  readonly address: string
  readonly endpoint: Endpoint
  private readonly child: ChildProcess
  private readonly unregister: () => Promise<void>

  constructor (init: { index: number, label: string, strategy: Strategy, peerId: string, address: string, endpoint: Endpoint, child: ChildProcess, unregister: () => Promise<void> }) {
    this.index = init.index
    this.label = init.label
    this.strategy = init.strategy
    this.peerId = init.peerId
    this.address = init.address
    this.endpoint = init.endpoint
    this.child = init.child
    this.unregister = init.unregister
  }

  get pid (): number { return this.child.pid as number }
  get running (): boolean { return this.child.exitCode == null && this.child.signalCode == null }

  async status (signal: AbortSignal): Promise<NodeStatusDoc> {
    return await httpJson<NodeStatusDoc>(this.endpoint, 'GET', '/status', undefined, signal)
  }

  async metrics (signal: AbortSignal): Promise<string> {
    const res = await httpRequest(this.endpoint, 'GET', '/metrics', undefined, signal)
    if (res.status !== 200) throw new TestnetNodeError(`${this.label}: GET /metrics: HTTP ${res.status}`)
    return res.text
  }

  /** Greedy completion; the node measures TTFT and TTLT itself, from prompt received to token out. */
  async complete (prompt: string, maxTokens: number, signal: AbortSignal): Promise<Completion> {
    if (!this.running) throw new TestnetNodeError(`${this.label} is not running (exit ${String(this.child.exitCode ?? this.child.signalCode)})`)
    const t0 = performance.now()
    const res = await httpJson(this.endpoint, 'POST', '/v1/completions', { prompt, max_tokens: maxTokens, temperature: 0 }, signal)
    const wallMs = performance.now() - t0
    const pm = res?.promptmesh
    if (pm == null || !Array.isArray(pm.tokens)) throw new TestnetNodeError(`${this.label}: the completion carries no promptmesh object`)
    return {
      promptTokens: pm.promptTokens,
      tokens: pm.tokens,
      ttftMs: pm.ttftMs,
      ttltMs: pm.ttltMs,
      source: pm.source,
      reusedTokens: pm.reusedTokens ?? 0,
      localTokens: pm.localTokens ?? 0,
      remoteTokens: pm.remoteTokens ?? 0,
      bytesFetched: pm.bytesFetched ?? 0,
      peers: pm.peers ?? [],
      storedChunks: pm.storedChunks ?? 0,
      requests: typeof pm.requests === 'number' ? pm.requests : undefined,
      emptyRequests: typeof pm.emptyRequests === 'number' ? pm.emptyRequests : undefined,
      fetchSkipped: typeof pm.fetchSkipped === 'boolean' ? pm.fetchSkipped : undefined,
      timings: pm.timings ?? {},
      wallMs
    }
  }

  /** CPU time the process has used so far (user + system, every thread), in ms. */
  async cpuMs (): Promise<number> {
    const stat = await readFile(`/proc/${this.pid}/stat`, 'utf8')
    // fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond() * 1000
  }

  /** SIGTERM, then SIGKILL after a grace period. Idempotent. */
  async stop (): Promise<void> {
    await this.unregister()
  }
}

/** Stops a child: SIGTERM, SIGKILL after `graceMs`; resolves once it exited. */
async function stopChild (child: ChildProcess, graceMs = STOP_TIMEOUT_MS): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

function killSync (child: ChildProcess): void {
  if (child.exitCode == null && child.signalCode == null) {
    try { child.kill('SIGKILL') } catch {}
  }
}

function logTo (child: ChildProcess, log: WriteStream): string[] {
  const tail: string[] = []
  const keep = (d: Buffer): void => {
    log.write(d)
    tail.push(d.toString())
    if (tail.length > 40) tail.shift()
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  child.once('exit', () => { log.end() })
  return tail
}

/** Resolves with the values of the wanted stdout lines once `done` matched, rejects if the process exits first. */
async function waitForLines (child: ChildProcess, what: string, patterns: Record<string, RegExp>, done: string, tail: string[], signal: AbortSignal): Promise<Record<string, string>> {
  return await new Promise((resolve, reject) => {
    const found: Record<string, string> = {}
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    const finish = (err?: Error): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      child.off('exit', onExit)
      lines.close()
      // closing readline pauses the stream; the log writer still wants the rest
      child.stdout?.resume()
      if (err != null) reject(err); else resolve(found)
    }
    const timer = setTimeout(() => finish(new TestnetNodeError(`${what} did not start within ${NODE_START_TIMEOUT_MS / 1000} s:\n${tail.join('').slice(-2000)}`)), NODE_START_TIMEOUT_MS)
    const onAbort = (): void => finish(signal.reason as Error)
    const onExit = (code: number | null, sig: string | null): void => finish(new TestnetNodeError(`${what} exited (${code ?? sig}) while starting:\n${tail.join('').slice(-2000)}`))
    signal.addEventListener('abort', onAbort, { once: true })
    child.once('exit', onExit)
    lines.on('line', line => {
      for (const [name, re] of Object.entries(patterns)) {
        const m = re.exec(line)
        if (m != null && found[name] == null) found[name] = m[1] as string
      }
      if (found[done] != null) finish()
    })
  })
}

/** Starts one node and resolves when its API answers. Registered for cleanup from the moment it is spawned. */
export async function startTestnetNode (host: NodeHost, options: NodeStartOptions, cleanup: Cleanup, signal: AbortSignal): Promise<TestnetNode> {
  const { index, label } = options
  const args = [BIN, 'start', '--model', options.model, '--data-dir', options.dataDir, '--strategy', options.strategy, '--threads', String(options.threads)]
  if (options.blockTokens != null) args.push('--block-tokens', String(options.blockTokens))
  if (options.adaptiveFetch === false) args.push('--no-adaptive-fetch')
  let endpoint: Endpoint
  const stopRelay: Array<() => Promise<void>> = []
  if (host.mode === 'netns') {
    const network = host.network
    const slot = network?.slots[index]
    if (network == null || slot == null) throw new TestnetNodeError(`no namespace for node ${index}`)
    args.push('--api', `127.0.0.1:${NODE_API_PORT}`, '--listen', `/ip4/${slot.ip}/tcp/${NODE_P2P_PORT}`)
    // the relay first: it connects upstream per request, so it may start before the node listens
    const socketPath = join(host.workDir, `${label}.sock`)
    const relay = network.spawn(index, process.execPath, [RELAY, socketPath, '127.0.0.1', String(NODE_API_PORT)], { stdio: ['pipe', 'pipe', 'pipe'] })
    stopRelay.push(cleanup.add(`relay ${label} (pid ${relay.pid ?? '?'})`, async () => { await stopChild(relay, 2_000) }, () => { killSync(relay) }))
    const relayTail = logTo(relay, createWriteStream(join(host.logDir, `${label}.relay.log`)))
    await waitForLines(relay, `relay for ${label}`, { ok: /^relay (.*)/ }, 'ok', relayTail, signal)
    endpoint = { socketPath }
  } else {
    args.push('--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns')
    for (const peer of options.peers ?? []) args.push('--peer', peer)
    endpoint = { url: '' }
  }
  const child = host.mode === 'netns'
    ? (host.network as MeshNetwork).spawn(index, process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  const unregister = cleanup.add(`node ${label} (pid ${child.pid ?? '?'})`, async () => {
    await stopChild(child)
    for (const stop of stopRelay) await stop()
  }, () => { killSync(child) })
  const tail = logTo(child, createWriteStream(join(host.logDir, `${label}.log`)))
  try {
    const lines = await waitForLines(child, `node ${label}`, {
      peerId: /^promptmesh node (\S+)/,
      address: /^listening\s+(\S+)/,
      api: /^api\s+(http\S+)/
    }, 'api', tail, signal)
    if (lines.peerId == null || lines.address == null) throw new TestnetNodeError(`node ${label} did not print its peer id and address:\n${tail.join('')}`)
    if ('url' in endpoint) endpoint = { url: lines.api as string }
    const address = lines.address.includes('/p2p/') ? lines.address : `${lines.address}/p2p/${lines.peerId}`
    return new TestnetNode({ index, label, strategy: options.strategy, peerId: lines.peerId, address, endpoint, child, unregister })
  } catch (err) {
    await unregister()
    throw err
  }
}
