import { flag, parse, str } from './args.js'
import { DEFAULT_API_URL } from './defaults.js'
import { apiJson } from './http.js'

const USAGE = `promptmesh status [--api URL] [--json]

Shows a running node: its identity and addresses, its peers with their catalogs, and its cache.`

interface Status {
  peerId: string
  addresses: string[]
  modelFingerprint: string
  peers: Array<{ peerId: string, connected: boolean, catalog: { entries: number, seq: number, ageMs: number, falsePositives: number } | null }>
  cache: { chunks: number, bytes: number, maxBytes: number, evictions: number, corruptRemoved?: number, missingRemoved?: number, writeErrors?: number, lastProblem?: string | null }
  bannedPeers?: Array<{ peerId: string, reason: string, remainingMs: number }>
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`
const age = (ms: number): string => ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`

export async function statusCommand (argv: string[]): Promise<number> {
  const p = parse(argv, { api: { type: 'string' }, 'api-key': { type: 'string' }, json: { type: 'boolean' } }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const api = (str(p, 'api') ?? process.env.PROMPTMESH_API ?? DEFAULT_API_URL).replace(/\/+$/, '')
  const s = await apiJson(`${api}/status`, { key: str(p, 'api-key') ?? process.env.PROMPTMESH_API_KEY, timeoutMs: 10_000 }) as Status
  if (flag(p, 'json')) { process.stdout.write(`${JSON.stringify(s)}\n`); return 0 }
  const lines = [
    `node         ${s.peerId}`,
    `model        ${s.modelFingerprint.slice(0, 16)}… (fingerprint)`,
    ...s.addresses.map((a, i) => `${i === 0 ? 'addresses   ' : '            '} ${a}`),
    `cache        ${s.cache.chunks} chunks, ${mb(s.cache.bytes)} of ${mb(s.cache.maxBytes)}, ${s.cache.evictions} evicted`,
    ...((s.cache.corruptRemoved ?? 0) + (s.cache.missingRemoved ?? 0) + (s.cache.writeErrors ?? 0) > 0
      ? [`             problems: ${s.cache.corruptRemoved ?? 0} corrupt, ${s.cache.missingRemoved ?? 0} missing, ${s.cache.writeErrors ?? 0} write errors${s.cache.lastProblem != null ? ` (last: ${s.cache.lastProblem})` : ''}`]
      : []),
    '',
    `peers (${s.peers.length})`
  ]
  if (s.peers.length === 0) lines.push('  none yet: see `promptmesh doctor` if peers should be there')
  else {
    lines.push(`  ${'peer'.padEnd(54)}${'link'.padEnd(10)}${'chunks'.padStart(8)}${'seq'.padStart(16)}${'age'.padStart(10)}${'false +'.padStart(9)}`)
    for (const peer of s.peers) {
      const c = peer.catalog
      lines.push(`  ${peer.peerId.padEnd(54)}${(peer.connected ? 'connected' : 'gone').padEnd(10)}${(c == null ? '-' : String(c.entries)).padStart(8)}${(c == null ? '-' : String(c.seq)).padStart(16)}${(c == null ? 'no catalog' : age(c.ageMs)).padStart(10)}${(c == null ? '-' : String(c.falsePositives)).padStart(9)}`)
    }
  }
  const banned = s.bannedPeers ?? []
  if (banned.length > 0) {
    lines.push('', `cut off (${banned.length})`)
    for (const b of banned) lines.push(`  ${b.peerId.padEnd(54)}${`${age(b.remainingMs)} left`.padEnd(12)}${b.reason}`)
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}
