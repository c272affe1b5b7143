/**
 * A mesh node for the mDNS test, run as a child process inside a private network namespace (the mocha
 * process lives in the host namespace, where mDNS must not run). Argument: JSON `{ fingerprint, keys, probe }`:
 * the keys it holds, and keys to look up in the catalogs it receives.
 * Prints one JSON status line per change on stdout; stops its node and exits when stdin closes.
 */
import '../../src/polyfill.js'
import { createMeshNode } from '../../src/network/index.js'
import { MemoryStore } from './helpers.js'

interface ChildConfig { fingerprint: string, keys: string[], probe: string[] }

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig
const store = new MemoryStore()
for (const key of config.keys) store.put(key, new Uint8Array([1]))

const node = await createMeshNode({
  modelFingerprint: config.fingerprint,
  store,
  mdns: true,
  mdnsIntervalMs: 1_000,
  catalog: { publishIntervalMs: 1_000 }
})

let last = ''
const report = (): void => {
  const status = JSON.stringify({
    peerId: node.peerId.toString(),
    connected: node.connectedPeers().map(String).sort(),
    catalogs: node.catalog.peers().map((p) => ({
      peerId: p.peerId,
      entries: p.entries,
      // indices of the probe keys this peer's catalog may hold
      has: config.probe.flatMap((key, i) => node.catalog.mayHave(p.peerId, key) ? [i] : [])
    })).sort((a, b) => a.peerId.localeCompare(b.peerId))
  })
  if (status !== last) {
    last = status
    process.stdout.write(status + '\n')
  }
}
const timer = setInterval(report, 100)
report()

let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  clearInterval(timer)
  node.stop().finally(() => process.exit(0))
}
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
