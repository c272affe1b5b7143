import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { promisify } from 'node:util'

export type Verdict = 'ok' | 'warn' | 'fail' | 'skip'

export interface Check {
  name: string
  verdict: Verdict
  detail: string
  /** what to do about it */
  fix?: string
}

const MDNS_GROUP = 0xe00000fb // 224.0.0.251

/** Routes from /proc/net/route (little-endian hex), without sending any packet. */
export function parseRouteTable (text: string): Array<{ iface: string, dest: number, mask: number }> {
  const le = (hex: string): number => {
    const n = parseInt(hex, 16)
    return (((n & 0xff) << 24) | ((n >> 8 & 0xff) << 16) | ((n >> 16 & 0xff) << 8) | (n >>> 24 & 0xff)) >>> 0
  }
  return text.split('\n').slice(1).map(l => l.trim().split(/\s+/)).filter(f => f.length >= 8).map(f => ({ iface: f[0] as string, dest: le(f[1] as string), mask: le(f[7] as string) }))
}

/** mDNS needs a route for 224.0.0.251: a multicast route or a default route. */
export function checkMulticastRoute (routeTable: string): Check {
  const routes = parseRouteTable(routeTable).filter(r => ((MDNS_GROUP & r.mask) >>> 0) === ((r.dest & r.mask) >>> 0))
  if (routes.length === 0) {
    return {
      name: 'multicast route',
      verdict: 'fail',
      detail: 'no route covers 224.0.0.251: mDNS announcements cannot leave this machine, so no peer will be found',
      fix: 'add one on the LAN interface, e.g. `ip route add 224.0.0.0/4 dev wlan0` (or configure a default route); or give nodes --peer addresses'
    }
  }
  const best = routes.sort((a, b) => b.mask - a.mask)[0] as { iface: string }
  return { name: 'multicast route', verdict: 'ok', detail: `224.0.0.251 goes out through ${best.iface}` }
}

/** Several LAN interfaces: mDNS answers on all of them, and peers may pick an address they cannot reach. */
export function checkInterfaces (ifaces = networkInterfaces()): Check {
  const up = Object.entries(ifaces)
    .map(([name, addrs]) => ({ name, v4: (addrs ?? []).filter(a => a.family === 'IPv4' && !a.internal) }))
    .filter(i => i.v4.length > 0)
  if (up.length === 0) return { name: 'network interfaces', verdict: 'fail', detail: 'no interface with an IPv4 address besides loopback', fix: 'connect the device to the LAN (Wi-Fi or Ethernet)' }
  const list = up.map(i => `${i.name} ${i.v4.map(a => a.address).join(',')}`).join('; ')
  if (up.length > 1) {
    return { name: 'network interfaces', verdict: 'warn', detail: `several interfaces: ${list}`, fix: 'peers may receive addresses they cannot reach: pass --listen /ip4/<LAN address>/tcp/4001 to bind the LAN one' }
  }
  return { name: 'network interfaces', verdict: 'ok', detail: list }
}

/** A firewall rule that drops UDP 5353 (or a DROP input policy) silences mDNS. */
export function checkFirewall (rules: string | undefined): Check {
  if (rules == null) return { name: 'firewall (mDNS port 5353)', verdict: 'skip', detail: 'neither iptables-save nor nft could be read (not root, or not installed)' }
  const lines = rules.split('\n')
  const blocks5353 = lines.some(l => /5353/.test(l) && /(DROP|REJECT|drop|reject)/.test(l))
  const dropPolicy = lines.some(l => /^:INPUT DROP/.test(l) || /hook input.*policy drop/.test(l))
  const allows5353 = lines.some(l => /5353/.test(l) && /(ACCEPT|accept)/.test(l))
  if (blocks5353 || (dropPolicy && !allows5353)) {
    return {
      name: 'firewall (mDNS port 5353)',
      verdict: 'fail',
      detail: blocks5353 ? 'a rule drops or rejects UDP port 5353' : 'incoming packets are dropped by default and nothing allows UDP 5353',
      fix: 'allow mDNS and the libp2p port, e.g. `iptables -A INPUT -p udp --dport 5353 -j ACCEPT` and `iptables -A INPUT -p tcp --dport 4001 -j ACCEPT` (with --listen .../tcp/4001)'
    }
  }
  return { name: 'firewall (mDNS port 5353)', verdict: 'ok', detail: 'no rule blocks UDP 5353' }
}

export interface StatusPeer { peerId: string, connected: boolean, catalog: { entries: number, ageMs: number } | null }

/** From a running node's /status: peers it knows but cannot reach, and peers that never send a catalog. */
export function checkPeers (status: { peers: StatusPeer[] } | undefined, uptimeHint = 'a minute'): Check[] {
  if (status == null) return [{ name: 'running node', verdict: 'skip', detail: 'no node answered at the API address: start one, or pass --api' }]
  const out: Check[] = []
  const peers = status.peers
  if (peers.length === 0) {
    out.push({ name: 'peers', verdict: 'warn', detail: 'the node knows no peer', fix: `give it ${uptimeHint}; if none appears, see the multicast and firewall checks, or start nodes with --peer /ip4/<addr>/tcp/<port>/p2p/<id>` })
  }
  const gone = peers.filter(p => !p.connected)
  if (gone.length > 0) {
    out.push({ name: 'peers seen but not connected', verdict: 'warn', detail: `${gone.length} peer(s): ${gone.map(p => p.peerId.slice(-8)).join(', ')}`, fix: 'they were announced but cannot be dialled: check that their announced address is on this LAN (see network interfaces) and that TCP to their port is allowed' })
  }
  const silent = peers.filter(p => p.connected && p.catalog == null)
  if (silent.length > 0) {
    out.push({ name: 'model fingerprint', verdict: 'warn', detail: `${silent.length} connected peer(s) send no catalog for this model: ${silent.map(p => p.peerId.slice(-8)).join(', ')}`, fix: 'they run another model file or other settings (the catalog topic is per model fingerprint): compare `promptmesh status` on both and use the same GGUF file and flags' })
  }
  if (peers.length > 0 && gone.length === 0 && silent.length === 0) out.push({ name: 'peers', verdict: 'ok', detail: `${peers.length} peer(s) connected, all sharing catalogs for this model` })
  return out
}

const run = promisify(execFile)

export async function readRouteTable (): Promise<string> {
  return await readFile('/proc/net/route', 'utf8').catch(() => '')
}

export async function readFirewallRules (): Promise<string | undefined> {
  for (const [cmd, args] of [['iptables-save', []], ['nft', ['list', 'ruleset']]] as const) {
    try {
      return (await run(cmd, [...args], { timeout: 5000 })).stdout
    } catch {}
  }
  return undefined
}
