import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { BIN, cliJson, startCliNode, waitUntil } from '../fixtures/cli-nodes.js'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'
import { createNetns, netnsUnavailable } from '../fixtures/netns.js'
import type { CliNode } from '../fixtures/cli-nodes.js'
import type { NetNamespace } from '../fixtures/netns.js'

const exec = promisify(execFile)
const MAX = '12'

/** Prometheus counter value from a node's /metrics text. */
function counter (text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
  return m == null ? NaN : Number(m[1])
}

/**
 * Real `promptmesh start` processes with mDNS and no peer flags, inside one fresh network namespace
 * (mDNS never runs in the machine's own namespace). Queries go through `promptmesh query`, as a user's would.
 */
describe('mesh of three nodes (root: network namespace)', function () {
  this.timeout(600_000)
  let ns: NetNamespace | undefined
  let dir: string
  let model: string
  const nodes: CliNode[] = []
  const question = (tail: string): string => `${LONG_PROMPT}${tail}`

  async function cold (prompt: string): Promise<number[]> {
    const { stdout } = await exec(process.execPath, [BIN, 'run', '--model', model, '--cache-dir', join(dir, 'cold'), '--no-cache', '--threads', '1', '--max-tokens', MAX, '--json', prompt])
    return JSON.parse(stdout).tokens
  }
  const query = async (node: CliNode, prompt: string): Promise<any> => await cliJson(ns as NetNamespace, ['query', '--api', node.api, '--max-tokens', MAX, '--json', prompt])
  const status = async (node: CliNode): Promise<any> => await cliJson(ns as NetNamespace, ['status', '--api', node.api, '--json'])
  const metrics = async (node: CliNode): Promise<string> => await (ns as NetNamespace).exec('curl', ['-s', `${node.api}/metrics`])
  const start = async (name: string, port: number, env: Record<string, string> = {}): Promise<CliNode> => await startCliNode(ns as NetNamespace, [
    '--model', model, '--data-dir', join(dir, name), '--api', `127.0.0.1:${port}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--threads', '1',
    // a tiny model computes faster than any fetch: these tests are about fetching, so always fetch
    '--no-adaptive-fetch'
  ], env)

  before(async function () {
    const reason = await netnsUnavailable()
    if (reason != null) {
      console.log(`      skipping the mesh tests: ${reason}`) // eslint-disable-line no-console
      this.skip()
    }
    model = await testModel('tiny-gemma3')
    dir = await mkdtemp(join(tmpdir(), 'pm-mesh-e2e-'))
    ns = await createNetns({ prefix: 'pm-e2e' })
    nodes.push(await start('a', 18_101), await start('b', 18_102), await start('c', 18_103))
  })

  after(async () => {
    await Promise.all(nodes.map(async n => await n.stop()))
    await ns?.delete()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('three nodes started with no peer flags find each other and exchange catalogs', async () => {
    await waitUntil('every node to hold both others\' catalogs', async () => {
      const all = await Promise.all(nodes.map(status))
      return all.every((s, i) => nodes.filter((_, j) => j !== i).every(o => s.peers.some((p: any) => p.peerId === o.peerId && p.connected && p.catalog != null)))
    })
  })

  it('answers on C from chunks A computed: source remote, the cold tokens, and B is never asked', async () => {
    const [a, b, c] = nodes as [CliNode, CliNode, CliNode]
    const first = await query(a, question(' Which planet has the most moons?'))
    expect(first.cache.source).to.equal('none')
    const aChunks = (await status(a)).cache.chunks
    expect(aChunks).to.be.greaterThan(3)
    await waitUntil('A\'s new catalog to reach C', async () => (await status(c)).peers.some((p: any) => p.peerId === a.peerId && p.catalog?.entries >= aChunks))

    const prompt = question(' Which planet is closest to the sun?')
    const res = await query(c, prompt)
    expect(res.cache.source).to.equal('remote')
    expect(res.cache.peers).to.deep.equal([a.peerId])
    expect(res.cache.reusedTokens).to.be.at.least(4 * 32)
    expect(res.cache.bytesFetched).to.be.greaterThan(0)
    expect(res.tokens).to.deep.equal(await cold(prompt))

    // B's catalog covers none of that prefix: it received no request at all
    expect(counter(await metrics(b), 'promptmesh_kv_requests_served_total')).to.equal(0)
    expect(counter(await metrics(a), 'promptmesh_kv_requests_served_total')).to.be.greaterThan(0)

    // C stored what it fetched: the same prompt again is a local hit
    const again = await query(c, prompt)
    expect(again.cache.source).to.equal('local')
    expect(again.tokens).to.deep.equal(res.tokens)
  })

  it('rejects chunks corrupted on the wire and still answers correctly', async () => {
    const [, , c] = nodes as [CliNode, CliNode, CliNode]
    // D flips a bit in every chunk it serves, after the digest was taken: as if damaged in transit
    const d = await start('d', 18_104, { PROMPTMESH_FAULT: 'corrupt-served-chunks' })
    nodes.push(d)
    const prefix = 'Few-shot examples about geology that only node D has computed. Rocks form in layers over time. '.repeat(3)
    await query(d, `${prefix}What is basalt?`)
    const dChunks = (await status(d)).cache.chunks
    await waitUntil('D\'s catalog to reach C', async () => (await status(c)).peers.some((p: any) => p.peerId === d.peerId && p.catalog?.entries >= dChunks))
    const prompt = `${prefix}What is granite?`
    const res = await query(c, prompt)
    expect(res.cache.source, JSON.stringify(res.cache)).to.equal('none')
    expect(res.cache.requests, JSON.stringify(res.cache)).to.be.greaterThan(0)
    expect(res.tokens).to.deep.equal(await cold(prompt))
    expect(counter(await metrics(c), 'promptmesh_kv_verification_failures_total')).to.be.greaterThan(0)
    await d.stop()
  })

  it('still answers correctly when the serving peer is killed mid-transfer', async () => {
    const [a, b] = nodes as [CliNode, CliNode, CliNode]
    const prefix = 'Completely new few-shot examples about chemistry that only node B has computed so far. '.repeat(10)
    await query(b, `${prefix}What is an acid?`)
    const bChunks = (await status(b)).cache.chunks
    await waitUntil('B\'s catalog to reach A', async () => (await status(a)).peers.some((p: any) => p.peerId === b.peerId && p.catalog?.entries >= bChunks))
    // a Wi-Fi-slow loopback so that the transfer takes seconds, then B dies in the middle of it
    // (tbf drops packets larger than its bucket: loopback's 64 KiB MTU goes down to Ethernet's first)
    await (ns as NetNamespace).exec('ip', ['link', 'set', 'lo', 'mtu', '1500'])
    await (ns as NetNamespace).exec('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '128kbit', 'burst', '16kb', 'latency', '2000ms'])
    try {
      const before = counter(await metrics(a), 'promptmesh_kv_bytes_received_total')
      const prompt = `${prefix}What is a base?`
      const pending = query(a, prompt)
      await waitUntil('the first chunk to arrive', async () => counter(await metrics(a), 'promptmesh_kv_bytes_received_total') > before, 30_000)
      b.child.kill('SIGKILL')
      const res = await pending
      expect(res.cache.reusedTokens, 'B died before it delivered the whole prefix').to.be.below(Math.floor(res.promptTokens / 32) * 32)
      expect(res.tokens).to.deep.equal(await cold(prompt))
      expect((await status(a)).peerId).to.equal(a.peerId) // A is still up
    } finally {
      await (ns as NetNamespace).exec('tc', ['qdisc', 'del', 'dev', 'lo', 'root'])
      await (ns as NetNamespace).exec('ip', ['link', 'set', 'lo', 'mtu', '65536'])
    }
  })
})
