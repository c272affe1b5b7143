/**
 * The testnet's LAN: one network namespace per node plus a "switch" namespace holding a Linux bridge,
 * joined by veth pairs. Everything lives inside namespaces the testnet creates: no interface, address
 * or route is ever added to the machine's own namespace, and mDNS multicasts only on the bridge.
 *
 *   switch ns:  pmbr-<id> ── s0 ── s1 ── … (bridge ports)
 *   node ns i:  eth0 = 10.77.0.(i+1)/24, lo, 224.0.0.0/4 via eth0 (mDNS)
 *
 * Link limits are tbf qdiscs on both ends of a node's veth: eth0 (upload) and s<i> (download).
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { SUBNET_BITS, SUBNET_PREFIX, TBF_BURST, TBF_LATENCY } from './constants.js'
import { TestnetSetupError } from './errors.js'
import type { Cleanup } from './cleanup.js'
import type { ChildProcess, SpawnOptions } from 'node:child_process'

const execFileP = promisify(execFile)
const CMD_TIMEOUT_MS = 30_000

async function run (cmd: string, args: string[]): Promise<string> {
  try {
    return (await execFileP(cmd, args, { timeout: CMD_TIMEOUT_MS, encoding: 'utf8' })).stdout
  } catch (err) {
    const e = err as Error & { stderr?: string }
    throw new TestnetSetupError(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`)
  }
}

function runSync (cmd: string, args: string[]): void {
  try { execFileSync(cmd, args, { stdio: 'ignore', timeout: CMD_TIMEOUT_MS }) } catch {}
}

export interface NodeSlot {
  index: number
  /** the node's namespace */
  ns: string
  ip: string
  /** interface inside the node's namespace */
  iface: string
  /** its peer, a bridge port in the switch namespace */
  switchIface: string
}

export interface MeshNetwork {
  readonly switchNs: string
  readonly bridge: string
  readonly slots: NodeSlot[]
  /** starts a process inside node i's namespace (`ip netns exec` execs, so the pid is the command's own) */
  spawn: (index: number, command: string, args: string[], options?: SpawnOptions) => ChildProcess
  exec: (index: number, command: string, args: string[]) => Promise<string>
  /** tbf on both directions of every node's link; undefined removes the limits */
  limitLinks: (mbit: number | undefined) => Promise<void>
  /** the qdiscs as tc reports them (for the report) */
  describeLinks: () => Promise<string[]>
}

/** Why namespaces cannot be made here, or undefined when they can (a probe namespace is created and deleted). */
export async function netnsUnavailable (runId: string): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces, bridges and tc need root'
  const name = `pmtn-${runId}-probe`
  try {
    await run('ip', ['netns', 'add', name])
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message.split('\n')[0] as string}`
  }
  try {
    await run('ip', ['-n', name, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1'])
    await run('ip', ['-n', name, 'link', 'add', 'probebr', 'type', 'bridge'])
    await run('ip', ['netns', 'exec', name, 'tc', 'qdisc', 'add', 'dev', 'probe0', 'root', 'tbf', 'rate', '1mbit', 'burst', TBF_BURST, 'latency', TBF_LATENCY])
    return undefined
  } catch (err) {
    return `cannot build a bridged network in a namespace: ${(err as Error).message.split('\n')[0] as string}`
  } finally {
    await run('ip', ['netns', 'delete', name]).catch(() => runSync('ip', ['netns', 'delete', name]))
  }
}

/** Kills what still runs inside a namespace of ours, then deletes it. */
async function deleteNamespace (ns: string): Promise<void> {
  try {
    const pids = await run('ip', ['netns', 'pids', ns])
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
  } catch {}
  await run('ip', ['netns', 'delete', ns])
}

function deleteNamespaceSync (ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
  } catch {}
  runSync('ip', ['netns', 'delete', ns])
}

async function addNamespace (ns: string, cleanup: Cleanup): Promise<void> {
  await run('ip', ['netns', 'add', ns])
  cleanup.add(`network namespace ${ns}`, async () => { await deleteNamespace(ns) }, () => { deleteNamespaceSync(ns) })
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
}

export async function createMeshNetwork (runId: string, nodes: number, cleanup: Cleanup): Promise<MeshNetwork> {
  if (nodes > 253) throw new TestnetSetupError(`a /24 holds at most 253 nodes, asked for ${nodes}`)
  const switchNs = `pmtn-${runId}-sw`
  const bridge = `pmbr-${runId}`
  await addNamespace(switchNs, cleanup)
  await run('ip', ['-n', switchNs, 'link', 'add', bridge, 'type', 'bridge'])
  // no IGMP querier on this LAN: with snooping on, the bridge could stop forwarding mDNS
  await run('ip', ['-n', switchNs, 'link', 'set', 'dev', bridge, 'type', 'bridge', 'mcast_snooping', '0']).catch(() => {})
  await run('ip', ['-n', switchNs, 'link', 'set', bridge, 'up'])

  const slots: NodeSlot[] = []
  for (let i = 0; i < nodes; i++) {
    const slot: NodeSlot = { index: i, ns: `pmtn-${runId}-n${i}`, ip: `${SUBNET_PREFIX}${i + 1}`, iface: 'eth0', switchIface: `s${i}` }
    await addNamespace(slot.ns, cleanup)
    // created in the switch namespace with its peer placed straight into the node's: never in ours
    await run('ip', ['-n', switchNs, 'link', 'add', slot.switchIface, 'type', 'veth', 'peer', 'name', slot.iface, 'netns', slot.ns])
    await run('ip', ['-n', switchNs, 'link', 'set', slot.switchIface, 'master', bridge])
    await run('ip', ['-n', switchNs, 'link', 'set', slot.switchIface, 'up'])
    await run('ip', ['-n', slot.ns, 'addr', 'add', `${slot.ip}/${SUBNET_BITS}`, 'dev', slot.iface])
    await run('ip', ['-n', slot.ns, 'link', 'set', slot.iface, 'multicast', 'on'])
    await run('ip', ['-n', slot.ns, 'link', 'set', slot.iface, 'up'])
    await run('ip', ['-n', slot.ns, 'route', 'add', '224.0.0.0/4', 'dev', slot.iface])
    slots.push(slot)
  }

  const tc = async (ns: string, args: string[]): Promise<string> => await run('ip', ['netns', 'exec', ns, 'tc', ...args])
  return {
    switchNs,
    bridge,
    slots,
    spawn: (index, command, args, options = {}) => spawn('ip', ['netns', 'exec', (slots[index] as NodeSlot).ns, command, ...args], options),
    exec: async (index, command, args) => await run('ip', ['netns', 'exec', (slots[index] as NodeSlot).ns, command, ...args]),
    limitLinks: async (mbit) => {
      for (const slot of slots) {
        for (const [ns, dev] of [[slot.ns, slot.iface], [switchNs, slot.switchIface]] as const) {
          if (mbit == null) {
            await tc(ns, ['qdisc', 'del', 'dev', dev, 'root']).catch(() => {})
          } else {
            await tc(ns, ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', TBF_BURST, 'latency', TBF_LATENCY])
          }
        }
      }
    },
    describeLinks: async () => {
      const out: string[] = []
      for (const slot of slots) {
        for (const [ns, dev] of [[slot.ns, slot.iface], [switchNs, slot.switchIface]] as const) {
          out.push(`${ns} ${dev}: ${(await tc(ns, ['qdisc', 'show', 'dev', dev, 'root']).catch(() => '?')).trim().split('\n')[0] as string}`)
        }
      }
      return out
    }
  }
}
