import '../../src/polyfill.js'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { createNetns, netnsUnavailable } from '../fixtures/netns.js'
import { FINGERPRINT, randomKey, waitFor } from './helpers.js'
import type { NetNamespace } from '../fixtures/netns.js'
import type { ChildProcess } from 'node:child_process'

interface ChildStatus {
  peerId: string
  connected: string[]
  catalogs: Array<{ peerId: string, entries: number, has: number[] }>
}

const CHILD = fileURLToPath(new URL('./mdns-child.js', import.meta.url))

/**
 * mDNS multicasts out of every interface it finds, so this test never runs it in the machine's own
 * network namespace: three nodes run as child processes inside one fresh namespace that has only a
 * loopback interface (multicast on, 224.0.0.0/4 routed through it).
 */
describe('mdns (root: network namespace)', function () {
  this.timeout(90_000)
  let ns: NetNamespace | undefined
  const children: ChildProcess[] = []

  before(async function () {
    const reason = await netnsUnavailable()
    if (reason != null) {
      console.log(`      skipping the mDNS test: ${reason}`) // eslint-disable-line no-console
      this.skip()
    }
    ns = await createNetns({ prefix: 'pm', multicast: true })
  })

  after(async () => {
    for (const child of children) child.stdin?.end()
    await Promise.all(children.map(async (child) => {
      if (child.exitCode != null || child.signalCode != null) return
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { child.kill('SIGKILL') }, 5_000)
        child.once('exit', () => { clearTimeout(timer); resolve() })
      })
    }))
    // deletes by name, killing anything left inside
    await ns?.delete()
  })

  it('three nodes with mDNS and no peers discover each other and exchange catalogs', async () => {
    const namespace = ns as NetNamespace
    const keys = [0, 1, 2].map(() => [randomKey(), randomKey(), randomKey()])
    const probe = keys.flat()
    const status: Array<ChildStatus | undefined> = [undefined, undefined, undefined]
    const errors: string[] = []
    for (let i = 0; i < 3; i++) {
      const child = namespace.spawn(process.execPath, [CHILD, JSON.stringify({ fingerprint: FINGERPRINT, keys: keys[i], probe })], { stdio: ['pipe', 'pipe', 'pipe'] })
      children.push(child)
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        try { status[i] = JSON.parse(line) as ChildStatus } catch { errors.push(line) }
      })
      child.stderr?.on('data', (d: Buffer) => { errors.push(d.toString()) })
      child.on('exit', (code, signal) => { if (code !== 0 && code !== null) errors.push(`child ${i} exited with ${code ?? signal}`) })
    }

    const complete = (): boolean => status.every((s, i) => {
      if (s == null) return false
      const others = status.filter((_, j) => j !== i)
      return others.every((o, n) => {
        const j = n >= i ? n + 1 : n
        const seen = s.catalogs.find((c) => c.peerId === o?.peerId)
        // every key of j appears in i's copy of j's catalog
        return seen != null && [0, 1, 2].every((k) => seen.has.includes(j * 3 + k))
      })
    })
    await waitFor(() => complete() || errors.some((e) => e.startsWith('child')), 60_000, 'mDNS discovery and catalog exchange')
    expect(errors.filter((e) => e.startsWith('child'))).to.deep.equal([])

    const ids = status.map((s) => s?.peerId)
    status.forEach((s, i) => {
      const others = ids.filter((_, j) => j !== i).sort()
      expect(s?.connected).to.include.members(others as string[])
      expect(s?.catalogs.map((c) => c.peerId).sort()).to.deep.equal(others)
      for (const c of s?.catalogs ?? []) expect(c.entries).to.equal(3)
    })
  })
})
