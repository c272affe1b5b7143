/**
 * Chunk-transfer throughput of /promptmesh/kv/1.0.0 between two nodes on loopback (TCP + noise +
 * yamux), for chunks of the Gemma-3-270M shape (590,488 bytes per 32-token block). Prints a table and
 * one JSON line. Options: --chunks N (per request, default 64) --rounds N (default 5) --size BYTES,
 * --same-process (both nodes on one event loop instead of the server in a child process, as two
 * devices would be), --server-store memory|digest|disk (what the server reads from: a Map, a Map that
 * also returns each chunk's SHA-256 through `getWithDigest`, or a real ChunkStore in a temp dir).
 */
import '../src/polyfill.js'
import { fork } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { ChunkStore } from '../src/cache/chunk-store.js'
import { createMeshNode } from '../src/network/index.js'
import type { MeshNode } from '../src/network/index.js'

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '5' },
    size: { type: 'string', default: '590488' },
    'same-process': { type: 'boolean', default: false },
    'server-store': { type: 'string', default: 'memory' },
    serve: { type: 'string' }
  }
})
const CHUNKS = Number(values.chunks)
const ROUNDS = Number(values.rounds)
const SIZE = Number(values.size)
const FINGERPRINT = createHash('sha256').update('bench').digest('hex')
const RAW_PROTOCOL = '/promptmesh/bench-raw/1.0.0'

class Store extends EventEmitter<{ added: [string], removed: [string] }> {
  readonly map = new Map<string, Uint8Array>()
  keys (): IterableIterator<string> { return this.map.keys() }
  get count (): number { return this.map.size }
  async get (key: string): Promise<Uint8Array | undefined> { return this.map.get(key) }
  async put (key: string, bytes: Uint8Array): Promise<void> { this.map.set(key, bytes); this.emit('added', key) }
}

/** A store that keeps each chunk's SHA-256, as ChunkStore's files do, and hands it to the server. */
class DigestStore extends Store {
  readonly digests = new Map<string, Uint8Array>()
  override async put (key: string, bytes: Uint8Array): Promise<void> {
    this.digests.set(key, createHash('sha256').update(bytes).digest())
    await super.put(key, bytes)
  }

  async getWithDigest (key: string): Promise<{ bytes: Uint8Array, sha256: Uint8Array } | undefined> {
    const bytes = this.map.get(key)
    const sha256 = this.digests.get(key)
    return bytes == null || sha256 == null ? undefined : { bytes, sha256 }
  }
}

interface Row {
  scenario: string
  chunks: number
  megabytes: number
  seconds: number
  mbps: number
  /** CPU time (user + system) per MB moved, on each side: independent of other load on the machine */
  clientCpuMsPerMB: number
  serverCpuMsPerMB?: number
  /** the throughput if the busier side had a core to itself: 1000 / max(cpu ms per MB) */
  cpuBoundMBps: number
}

const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

/** The serving node: holds `keys` (random payloads), reports its address, stops when told or orphaned. */
async function serve (keys: string[]): Promise<MeshNode> {
  const kind = values['server-store']
  let store: Store | ChunkStore
  if (kind === 'disk') {
    const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'pm-bench-'))
    process.on('exit', () => { rmSync(dir, { recursive: true, force: true }) })
    store = await ChunkStore.open({ dir, maxBytes: 2 * keys.length * SIZE })
  } else {
    store = kind === 'digest' ? new DigestStore() : new Store()
  }
  for (const key of keys) await store.put(key, randomBytes(SIZE))
  const node = await createMeshNode({ modelFingerprint: FINGERPRINT, store, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  // the stack's own ceiling: the same bytes on a bare stream, no framing, no hashing
  const block = randomBytes(262_144)
  await node.libp2p.handle(RAW_PROTOCOL, async (stream) => {
    try {
      for (let sent = 0; sent < CHUNKS * SIZE; sent += block.byteLength) {
        if (!stream.send(block.subarray(0, Math.min(block.byteLength, CHUNKS * SIZE - sent)))) await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
      }
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  })
  return node
}

async function main (): Promise<void> {
  const keys: string[] = []
  for (let i = 0; i < CHUNKS * 4; i++) keys.push(randomBytes(32).toString('hex'))
  const nodes: MeshNode[] = []
  let child: ReturnType<typeof fork> | undefined
  try {
    let serverAddr: string
    if (values['same-process']) {
      const server = await serve(keys)
      nodes.push(server)
      serverAddr = server.getMultiaddrs()[0]?.toString() ?? ''
    } else {
      child = fork(fileURLToPath(import.meta.url), ['--size', String(SIZE), '--chunks', String(CHUNKS), '--server-store', values['server-store'], '--serve', keys.join(',')], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
      const [message] = await once(child, 'message') as [{ addr: string }]
      serverAddr = message.addr
    }
    const serverPeer = serverAddr.split('/p2p/')[1] ?? ''
    const client = await createMeshNode({
      modelFingerprint: FINGERPRINT,
      store: new Store(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      peers: [serverAddr],
      fetcher: { maxChunksPerRequest: 16 }
    })
    nodes.push(client)
    const server = { peerId: client.libp2p.getPeers().find((p) => p.toString() === serverPeer) }
    // wait until the client holds the server's catalog (the fetcher scenario needs it)
    const t0 = Date.now()
    while (server.peerId == null || !keys.every((k) => client.catalog.mayHave(serverPeer, k))) {
      server.peerId ??= client.libp2p.getPeers().find((p) => p.toString() === serverPeer)
      if (Date.now() - t0 > 20_000) throw new Error('catalog never arrived')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }

    const rows: Row[] = []
    const serverCpu = async (): Promise<number | undefined> => {
      if (child == null) return undefined
      const reply = once(child, 'message') as Promise<[{ cpuMs: number }]>
      child.send('cpu')
      return (await reply)[0].cpuMs
    }
    const measure = async (scenario: string, once: () => Promise<number>): Promise<void> => {
      await once() // warm-up: connection, stream limits, JIT
      let bytes = 0
      let chunks = 0
      const serverCpu0 = await serverCpu()
      const clientCpu0 = cpuMs()
      const start = performance.now()
      for (let r = 0; r < ROUNDS; r++) {
        const n = await once()
        chunks += n
        bytes += n * SIZE
      }
      const seconds = (performance.now() - start) / 1000
      const clientCpuMsPerMB = (cpuMs() - clientCpu0) / (bytes / 1e6)
      const serverCpu1 = await serverCpu()
      const serverCpuMsPerMB = serverCpu0 == null || serverCpu1 == null ? undefined : (serverCpu1 - serverCpu0) / (bytes / 1e6)
      const cpuBoundMBps = 1000 / Math.max(clientCpuMsPerMB, serverCpuMsPerMB ?? 0)
      rows.push({ scenario, chunks, megabytes: bytes / 1e6, seconds, mbps: bytes / 1e6 / seconds, clientCpuMsPerMB, serverCpuMsPerMB, cpuBoundMBps })
    }
    const fetchAll = async (subset: string[]): Promise<number> => {
      let n = 0
      for await (const answer of client.transfer.fetch(server.peerId as NonNullable<typeof server.peerId>, subset)) {
        if (answer.status !== 'found') throw new Error(`chunk ${answer.key} ${answer.status}`)
        n++
      }
      return n
    }

    await measure(`1 request × ${CHUNKS} chunks`, async () => fetchAll(keys.slice(0, CHUNKS)))
    await measure(`4 parallel requests × ${CHUNKS} chunks`, async () => {
      const counts = await Promise.all([0, 1, 2, 3].map(async (i) => fetchAll(keys.slice(i * CHUNKS, (i + 1) * CHUNKS))))
      return counts.reduce((a, b) => a + b, 0)
    })
    await measure(`MeshFetcher continuation of ${CHUNKS} chunks`, async () => {
      const result = await client.fetcher.fetchContinuation(keys.slice(0, CHUNKS), 0, {})
      if (result.chunks.length !== CHUNKS) throw new Error(`fetcher returned ${result.chunks.length} of ${CHUNKS}`)
      return result.chunks.length
    })
    await measure('1 request × 1 chunk (latency-bound)', async () => fetchAll(keys.slice(0, 1)))
    await measure(`baseline: bare libp2p stream, ${CHUNKS} × ${SIZE} bytes`, async () => {
      const stream = await client.libp2p.dialProtocol(server.peerId as NonNullable<typeof server.peerId>, RAW_PROTOCOL, { signal: AbortSignal.timeout(30_000) })
      await stream.close()
      let got = 0
      for await (const buf of stream) got += buf.byteLength
      if (got !== CHUNKS * SIZE) throw new Error(`raw stream delivered ${got} bytes`)
      return CHUNKS
    })

    const pad = (s: string, n: number): string => s.padEnd(n)
    const mode = `${values['same-process'] ? 'both nodes in one process' : 'server in a child process'}, server store: ${values['server-store']}`
    console.log(`mesh transfer on loopback (${mode}), chunk size ${SIZE} bytes, ${ROUNDS} rounds after a warm-up, load average ${loadavg()[0]?.toFixed(2)}`)
    console.log(`${pad('scenario', 44)} ${pad('chunks', 7)} ${pad('MB', 8)} ${pad('s', 7)} ${pad('MB/s', 7)} ${pad('cpu ms/MB client', 17)} ${pad('server', 7)} CPU-bound MB/s`)
    for (const r of rows) {
      console.log(`${pad(r.scenario, 44)} ${pad(String(r.chunks), 7)} ${pad(r.megabytes.toFixed(1), 8)} ${pad(r.seconds.toFixed(3), 7)} ${pad(r.mbps.toFixed(1), 7)} ${pad(r.clientCpuMsPerMB.toFixed(2), 17)} ${pad(r.serverCpuMsPerMB?.toFixed(2) ?? '-', 7)} ${r.cpuBoundMBps.toFixed(0)}`)
    }
    const best = rows[0] as Row
    console.log(JSON.stringify({
      bench: 'mesh-transfer',
      chunkBytes: SIZE,
      sameProcess: values['same-process'],
      serverStore: values['server-store'],
      chunksPerRequest: CHUNKS,
      rounds: ROUNDS,
      throughputMBps: Number(best.mbps.toFixed(1)),
      cpuBoundMBps: Number(best.cpuBoundMBps.toFixed(1)),
      loadAverage: loadavg()[0],
      scenarios: rows.map((r) => ({
        scenario: r.scenario,
        mbps: Number(r.mbps.toFixed(1)),
        chunks: r.chunks,
        seconds: Number(r.seconds.toFixed(3)),
        clientCpuMsPerMB: Number(r.clientCpuMsPerMB.toFixed(3)),
        serverCpuMsPerMB: r.serverCpuMsPerMB == null ? null : Number(r.serverCpuMsPerMB.toFixed(3)),
        cpuBoundMBps: Number(r.cpuBoundMBps.toFixed(1))
      }))
    }))
  } finally {
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
    if (child != null && child.exitCode == null) {
      child.send('stop')
      await once(child, 'exit')
    }
  }
}

if (values.serve != null) {
  // child process: serve until the parent says stop or goes away
  const node = await serve(values.serve.split(','))
  process.send?.({ addr: node.getMultiaddrs()[0]?.toString() })
  const stop = (): void => { void node.stop().finally(() => process.exit(0)) }
  process.on('message', (message) => {
    if (message === 'cpu') process.send?.({ cpuMs: cpuMs() })
    else stop()
  })
  process.on('disconnect', stop)
} else {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
