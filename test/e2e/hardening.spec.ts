/**
 * Hardening: hostile peers, faults and bad input lose nothing and crash nothing.
 *
 * - chunk store: a full disk (a 1 MiB tmpfs, root), kill -9 during writes and evictions, files
 *   corrupted, truncated, replaced or deleted behind the store's back;
 * - HTTP API: slow and aborted clients, a full queue, oversized bodies, the API key;
 * - a mesh of real `promptmesh start` processes in a network namespace (root), with a swarm key,
 *   against attacker processes (test/mesh/attacker.ts): an outsider without the key, a forger and
 *   liar, a flooder; a chunk corrupted on disk; a serving peer killed mid-transfer; 50 concurrent
 *   queries. Every answer is compared with the uncached answer (`promptmesh run --no-cache`).
 */
import '../../src/polyfill.js'
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { ApiServer } from '../../src/api/server.js'
import { ChunkStore } from '../../src/cache/chunk-store.js'
import { CHUNK_FILE_HEADER_BYTES, CHUNK_FILE_MAGIC, CHUNK_FILE_VERSION } from '../../src/cache/constants.js'
import { DEFAULT_API_HOST } from '../../src/cli/defaults.js'
import { writeSwarmKey } from '../../src/network/swarm-key.js'
import { BIN, cliJson, startCliNode, waitUntil } from '../fixtures/cli-nodes.js'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'
import { createNetns, netnsUnavailable } from '../fixtures/netns.js'
import { StubPipeline } from '../fuzz/stub-pipeline.js'
import type { Pipeline } from '../../src/pipeline/pipeline.js'
import type { CliNode } from '../fixtures/cli-nodes.js'
import type { NetNamespace } from '../fixtures/netns.js'
import type { AttackerConfig } from '../mesh/attacker.js'
import type { ChildProcess } from 'node:child_process'

const exec = promisify(execFile)
const ATTACKER = fileURLToPath(new URL('../mesh/attacker.js', import.meta.url))
const key = (n: number): string => createHash('sha256').update(`hardening ${n}`).digest('hex')
const fileOf = (dir: string, k: string): string => join(dir, 'chunks', k.slice(0, 2), k)
const isRoot = process.platform === 'linux' && process.getuid?.() === 0

/** What a consistent store looks like from outside: every indexed chunk reads back whole, the budget holds, nothing half-written is left. */
async function expectConsistent (store: ChunkStore, size: number): Promise<void> {
  expect(store.bytes).to.be.at.most(store.maxBytes)
  expect(await readdir(join(store.dir, 'tmp'))).to.deep.equal([])
  for (const k of [...store.keys()]) {
    const got = await store.get(k)
    expect(got?.length, `chunk ${k.slice(0, 8)} reads back whole`).to.equal(size)
  }
  expect(await store.diskBytes()).to.equal(store.bytes)
}

describe('hardening', function () {
  this.timeout(600_000)

  describe('chunk store under faults', () => {
    let dir: string
    beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-hard-store-')) })
    afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

    it('a full disk (ENOSPC): puts fail cleanly, nothing partial stays, the problem is reported, and it recovers (root: tmpfs)', async function () {
      if (!isRoot) {
        console.log('      skipping the full-disk test: mounting a tmpfs needs root') // eslint-disable-line no-console
        this.skip()
      }
      const mnt = join(dir, 'mnt')
      await mkdir(mnt)
      await exec('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt])
      try {
        const store = await ChunkStore.open({ dir: mnt, maxBytes: 64 * 1024 * 1024 })
        const size = 150_000
        const stored: string[] = []
        let failure: Error | undefined
        for (let n = 0; n < 20 && failure == null; n++) {
          try {
            await store.put(key(n), Buffer.alloc(size, n))
            stored.push(key(n))
          } catch (err) {
            failure = err as Error
          }
        }
        expect(failure?.name).to.equal('StoreWriteError')
        expect(failure?.message).to.match(/disk is full/)
        expect(stored.length).to.be.within(1, 7)
        expect(store.stats().writeErrors).to.equal(1)
        expect(store.stats().lastProblem).to.match(/disk is full/)
        expect([...store.keys()]).to.deep.equal(stored)
        await expectConsistent(store, size)
        // reopened: the same chunks, nothing else
        const again = await ChunkStore.open({ dir: mnt, maxBytes: 64 * 1024 * 1024 })
        expect([...again.keys()].sort()).to.deep.equal([...stored].sort())
        expect(again.stats().corruptRemoved).to.equal(0)
        await expectConsistent(again, size)
        // room again: writes work
        await again.delete(stored[0] as string)
        await again.delete(stored[1] as string)
        expect(await again.put(key(100), Buffer.alloc(size, 1))).to.equal(true)
        expect((await again.get(key(100)))?.length).to.equal(size)
      } finally {
        await exec('umount', [mnt]).catch(async () => await exec('umount', ['-l', mnt]))
      }
    })

    it('kill -9 again and again in the middle of writes and evictions: it reopens consistent each time, within its budget', async function () {
      const storeModule = fileURLToPath(new URL('../../src/cache/chunk-store.js', import.meta.url))
      const size = 200_000
      const maxBytes = 8 * (size + CHUNK_FILE_HEADER_BYTES) // every put beyond 8 chunks evicts
      const script = `
        import { ChunkStore } from ${JSON.stringify(storeModule)}
        import { createHash } from 'node:crypto'
        const store = await ChunkStore.open({ dir: ${JSON.stringify(dir)}, maxBytes: ${maxBytes} })
        const start = Number(process.argv[1])
        for (let n = start; ; n++) {
          await store.put(createHash('sha256').update('kill ' + n).digest('hex'), Buffer.alloc(${size}, n % 251))
          if (n === start + 12) process.stdout.write('evicting\\n')
        }`
      let kills = 0
      for (let round = 0; round < 6; round++) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, String(round * 1000)], { stdio: ['ignore', 'pipe', 'inherit'] })
        await new Promise<void>((resolve, reject) => {
          child.stdout.once('data', () => { resolve() })
          child.once('exit', (code) => { reject(new Error(`writer exited early with ${code}`)) })
        })
        // a different moment of the write/evict cycle each round
        await new Promise((resolve) => setTimeout(resolve, 20 + round * 37))
        child.kill('SIGKILL')
        await new Promise((resolve) => child.once('exit', resolve))
        kills++
        const store = await ChunkStore.open({ dir, maxBytes })
        expect(store.count).to.be.within(1, 8)
        expect(store.stats().corruptRemoved).to.equal(0)
        await expectConsistent(store, size)
      }
      expect(kills).to.equal(6)
    })

    it('files corrupted, truncated, replaced, oversized or deleted behind its back: never served, removed, reported, budget kept', async () => {
      const size = 5_000
      const store = await ChunkStore.open({ dir, maxBytes: 10_000_000 })
      for (let n = 0; n < 8; n++) await store.put(key(n), Buffer.alloc(size, n + 1))
      // 0: a bit flipped; 1: truncated; 2: garbage; 3: deleted; 4: a directory; 5: header says more than any chunk
      const flipped = await readFile(fileOf(dir, key(0)))
      flipped[CHUNK_FILE_HEADER_BYTES + 100] = (flipped[CHUNK_FILE_HEADER_BYTES + 100] as number) ^ 0x04
      await writeFile(fileOf(dir, key(0)), flipped)
      await truncate(fileOf(dir, key(1)), CHUNK_FILE_HEADER_BYTES + 10)
      await writeFile(fileOf(dir, key(2)), Buffer.alloc(size + CHUNK_FILE_HEADER_BYTES, 0x42))
      await rm(fileOf(dir, key(3)))
      await rm(fileOf(dir, key(4)))
      await mkdir(fileOf(dir, key(4)))
      for (const n of [0, 1, 2, 3, 4]) expect(await store.get(key(n)), `chunk ${n}`).to.equal(undefined)
      const stats = store.stats()
      expect(stats.corruptRemoved).to.equal(3)
      expect(stats.missingRemoved).to.equal(2)
      expect(stats.lastProblem).to.be.a('string')
      expect(store.count).to.equal(3)
      expect(store.bytes).to.equal(3 * (size + CHUNK_FILE_HEADER_BYTES))
      await expectConsistent(store, size)
      // the same damage found at open instead: removed there, never read whole
      await rm(fileOf(dir, key(4)), { recursive: true, force: true })
      const big = Buffer.alloc(CHUNK_FILE_HEADER_BYTES)
      big.writeUInt32LE(CHUNK_FILE_MAGIC, 0)
      big.writeUInt32LE(CHUNK_FILE_VERSION, 4)
      big.writeBigUInt64LE(BigInt(2 ** 40), 40)
      await writeFile(fileOf(dir, key(5)), big)
      await truncate(fileOf(dir, key(6)), 30)
      const reopened = await ChunkStore.open({ dir, maxBytes: 10_000_000 })
      expect(reopened.count).to.equal(1)
      expect(reopened.stats().corruptRemoved).to.equal(2)
      await expectConsistent(reopened, size)
    })

    it('carries on when its whole directory is removed while it runs', async () => {
      const store = await ChunkStore.open({ dir, maxBytes: 10_000_000 })
      await store.put(key(1), Buffer.alloc(1000, 1))
      await rm(dir, { recursive: true, force: true })
      expect(await store.get(key(1))).to.equal(undefined)
      expect(store.count).to.equal(0)
      expect(await store.put(key(2), Buffer.alloc(1000, 2))).to.equal(true)
      expect((await store.get(key(2)))?.length).to.equal(1000)
    })

    it('answers exactly with its cache on a full disk (root: tmpfs; promptmesh run)', async function () {
      if (!isRoot) {
        console.log('      skipping: mounting a tmpfs needs root') // eslint-disable-line no-console
        this.skip()
      }
      const model = await testModel('tiny-gemma3')
      const mnt = join(dir, 'full')
      await mkdir(mnt)
      await exec('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
      try {
        await ChunkStore.open({ dir: mnt }) // its directories exist; now fill the disk
        await writeFile(join(mnt, 'filler'), Buffer.alloc(256 * 1024)).catch(() => {})
        const run = async (cacheDir: string, extra: string[]): Promise<any> => JSON.parse((await exec(process.execPath, [BIN, 'run', '--model', model, '--cache-dir', cacheDir, '--threads', '1', '--max-tokens', '8', '--json', ...extra, LONG_PROMPT])).stdout)
        const full = await run(mnt, [])
        const cold = await run(join(dir, 'cold'), ['--no-cache'])
        expect(full.tokens).to.deep.equal(cold.tokens)
        expect(full.cache.storedChunks).to.equal(0)
        expect(await readdir(join(mnt, 'tmp'))).to.deep.equal([])
      } finally {
        await exec('umount', [mnt]).catch(async () => await exec('umount', ['-l', mnt]))
      }
    })
  })

  describe('HTTP API under abuse', () => {
    let api: ApiServer
    let url: string
    let pipeline: StubPipeline

    async function start (init: Partial<ConstructorParameters<typeof ApiServer>[0]> = {}): Promise<void> {
      pipeline = new StubPipeline()
      api = new ApiServer({ pipeline: pipeline as unknown as Pipeline, status: () => ({}), modelId: 'stub', ...init })
      url = await api.listen('127.0.0.1', 0)
    }
    afterEach(async () => { await api?.close() })

    async function post (body: unknown, headers: Record<string, string> = {}, path = '/v1/completions'): Promise<{ status: number, json: any }> {
      const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
      return { status: res.status, json: await res.json().catch(() => undefined) }
    }

    /** Opens a raw connection and returns what the server sent before closing it, and after how long. */
    async function raw (send: (socket: ReturnType<typeof connect>) => void): Promise<{ text: string, ms: number }> {
      const port = Number(new URL(url).port)
      const t0 = Date.now()
      return await new Promise((resolve) => {
        const socket = connect(port, '127.0.0.1', () => { send(socket) })
        const parts: Buffer[] = []
        socket.on('data', (d: Buffer) => parts.push(d))
        socket.on('error', () => {})
        socket.on('close', () => { resolve({ text: Buffer.concat(parts).toString(), ms: Date.now() - t0 }) })
      })
    }

    it('listens on 127.0.0.1 unless told otherwise', () => {
      expect(DEFAULT_API_HOST).to.equal('127.0.0.1')
    })

    it('requires the API key when one is set', async () => {
      await start({ apiKey: 's3cret' })
      for (const auth of [undefined, 'Bearer wrong', 'Bearer s3cret2', 's3cret', 'Bearer S3CRET', 'Basic s3cret']) {
        const res = await post({ prompt: 'hi' }, auth == null ? {} : { authorization: auth })
        expect(res.status, String(auth)).to.equal(401)
        expect(res.json.error.code).to.equal('invalid_api_key')
      }
      expect((await post({ prompt: 'hi' }, { authorization: 'Bearer s3cret' })).status).to.equal(200)
      expect(pipeline.calls).to.have.length(1)
    })

    it('answers 429 in OpenAI\'s shape when the queue is full, and serves the queued ones', async () => {
      await start({ maxQueue: 3 })
      let release!: () => void
      pipeline.hold = new Promise<void>((resolve) => { release = resolve })
      const queued = [1, 2, 3].map(async (i) => await post({ prompt: `q${i}` }))
      while (api.queued < 3) await new Promise((resolve) => setImmediate(resolve))
      const refused = await Promise.all([4, 5].map(async (i) => await post({ prompt: `q${i}` })))
      for (const r of refused) {
        expect(r.status).to.equal(429)
        expect(r.json.error).to.include({ type: 'rate_limit_error', code: 'queue_full' })
      }
      release()
      expect((await Promise.all(queued)).map((r) => r.status)).to.deep.equal([200, 200, 200])
      expect(api.queued).to.equal(0)
    })

    it('answers 413 to a body over 1 MiB, declared or not', async () => {
      await start()
      const big = JSON.stringify({ prompt: 'x'.repeat(1_100_000) })
      expect((await post(big)).status).to.equal(413)
      const chunked = await raw((s) => {
        s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n')
        for (let i = 0; i < 20; i++) s.write(`10000\r\n${'x'.repeat(0x10000)}\r\n`)
      })
      expect(chunked.text).to.match(/^HTTP\/1\.1 413/)
    })

    it('closes a connection whose headers trickle in (slowloris) and one whose body never completes', async () => {
      await start({ headersTimeoutMs: 1_000, bodyTimeoutMs: 1_000 })
      const slowHeaders = await raw((s) => {
        s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\n')
        const t = setInterval(() => { if (!s.destroyed) s.write('X-Slow: 1\r\n') }, 200)
        s.on('close', () => clearInterval(t))
      })
      expect(slowHeaders.text).to.match(/^HTTP\/1\.1 408/)
      expect(slowHeaders.ms).to.be.below(5_000)
      const slowBody = await raw((s) => {
        s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":')
        const t = setInterval(() => { if (!s.destroyed) s.write(' ') }, 200)
        s.on('close', () => clearInterval(t))
      })
      expect(slowBody.text).to.match(/^HTTP\/1\.1 408/)
      expect(slowBody.text).to.match(/"code":"timeout"/)
      expect((await post({ prompt: 'still here' })).status).to.equal(200)
    })

    it('cancels the query of a client that goes away mid-stream, and of one that leaves while queued', async () => {
      await start({ maxQueue: 4 })
      let release!: () => void
      pipeline.hold = new Promise<void>((resolve) => { release = resolve })
      const streamed = await raw((s) => {
        const body = JSON.stringify({ prompt: 'tell me a long story', stream: true })
        s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
        s.once('data', () => { s.destroy() }) // the first event arrived: hang up
      })
      expect(streamed.text).to.match(/text\/event-stream/)
      while (pipeline.calls[0]?.aborted == null) await new Promise((resolve) => setTimeout(resolve, 10))
      expect((pipeline.calls[0]?.aborted as Error).message).to.match(/closed the connection/)
      // a non-streaming client that hangs up while its query waits
      await raw((s) => {
        const body = JSON.stringify({ prompt: 'never mind' })
        s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
        setTimeout(() => s.destroy(), 100)
      })
      while (pipeline.calls[1]?.aborted == null) await new Promise((resolve) => setTimeout(resolve, 10))
      release()
      expect(api.queued).to.equal(0)
      expect((await post({ prompt: 'next' })).status).to.equal(200)
    })
  })

  describe('a private mesh under attack (root: network namespace)', () => {
    let ns: NetNamespace | undefined
    let dir: string
    let model: string
    let swarmKeyFile: string
    const nodes: CliNode[] = []
    const attackers: ChildProcess[] = []
    const MAX = '8'
    const figures = { queries: 0, checked: 0, refused: 0, notes: [] as string[] }
    const coldCache = new Map<string, number[]>()

    async function cold (prompt: string): Promise<number[]> {
      const known = coldCache.get(prompt)
      if (known != null) return known
      const { stdout } = await exec(process.execPath, [BIN, 'run', '--model', model, '--cache-dir', join(dir, 'cold'), '--no-cache', '--threads', '1', '--max-tokens', MAX, '--json', prompt])
      const tokens = JSON.parse(stdout).tokens as number[]
      coldCache.set(prompt, tokens)
      return tokens
    }
    const namespace = (): NetNamespace => ns as NetNamespace
    /** A query through the CLI, as a user's; its tokens must be the cold ones. */
    async function query (node: CliNode, prompt: string): Promise<any> {
      const res = await cliJson(namespace(), ['query', '--api', node.api, '--max-tokens', MAX, '--json', prompt])
      figures.queries++
      expect(res.tokens, `answer to "${prompt.slice(-40)}"`).to.deep.equal(await cold(prompt))
      figures.checked++
      return res
    }
    const status = async (node: CliNode): Promise<any> => await cliJson(namespace(), ['status', '--api', node.api, '--json'])
    const start = async (name: string, port: number, extra: string[] = []): Promise<CliNode> => await startCliNode(namespace(), [
      '--model', model, '--data-dir', join(dir, name), '--api', `127.0.0.1:${port}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--threads', '1',
      '--no-adaptive-fetch', ...extra
    ])
    const member = async (name: string, port: number): Promise<CliNode> => await start(name, port, ['--swarm-key', swarmKeyFile])
    const address = async (node: CliNode): Promise<string> => (await status(node)).addresses[0]
    /** one sample of the node's /metrics (unlabelled series) */
    const metric = async (node: CliNode, name: string): Promise<number> => {
      const text = await namespace().exec('curl', ['-s', `${node.api}/metrics`])
      return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
    }
    const holds = async (reader: CliNode, owner: CliNode, entries: number): Promise<boolean> =>
      (await status(reader)).peers.some((p: any) => p.peerId === owner.peerId && p.connected && p.catalog?.entries >= entries)

    /** Runs an attacker process; resolves with the first line of `event` it prints. */
    async function attack (config: Omit<AttackerConfig, 'fingerprint'>, event: string): Promise<{ child: ChildProcess, result: any }> {
      const fingerprint = (await status(nodes[0] as CliNode)).modelFingerprint
      const child = namespace().spawn(process.execPath, [ATTACKER, JSON.stringify({ ...config, fingerprint })], { stdio: ['pipe', 'pipe', 'pipe'] })
      attackers.push(child)
      const errors: string[] = []
      child.stderr?.on('data', (d: Buffer) => errors.push(d.toString()))
      const result = await new Promise<any>((resolve, reject) => {
        let buffer = ''
        child.stdout?.on('data', (d: Buffer) => {
          buffer += d.toString()
          for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
            const line = buffer.slice(0, nl)
            buffer = buffer.slice(nl + 1)
            try {
              const msg = JSON.parse(line)
              if (msg.event === event) resolve(msg)
              if (msg.event === 'error') errors.push(line)
            } catch {}
          }
        })
        child.once('exit', (code) => { reject(new Error(`attacker exited with ${code}: ${errors.join('')}`)) })
      })
      return { child, result }
    }

    before(async function () {
      const reason = await netnsUnavailable()
      if (reason != null) {
        console.log(`      skipping the hostile-mesh tests: ${reason}`) // eslint-disable-line no-console
        this.skip()
      }
      model = await testModel('tiny-gemma3')
      dir = await mkdtemp(join(tmpdir(), 'pm-hard-mesh-'))
      swarmKeyFile = join(dir, 'swarm.key')
      await writeSwarmKey(swarmKeyFile)
      ns = await createNetns({ prefix: 'pm-hard' })
      nodes.push(await member('a', 18_201), await member('b', 18_202), await member('c', 18_203))
      await waitUntil('the three members to hold each other\'s catalogs', async () => {
        const all = await Promise.all(nodes.map(status))
        return all.every((s, i) => nodes.filter((_, j) => j !== i).every(o => s.peers.some((p: any) => p.peerId === o.peerId && p.connected && p.catalog != null)))
      })
    })

    after(async () => {
      for (const child of attackers) child.stdin?.end()
      await Promise.all(attackers.map(async (child) => {
        if (child.exitCode != null || child.signalCode != null) return
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
          child.once('exit', () => { clearTimeout(t); resolve() })
        })
      }))
      await Promise.all(nodes.map(async n => await n.stop()))
      await ns?.delete()
      if (dir != null) await rm(dir, { recursive: true, force: true })
      if (figures.queries > 0) console.log(`      hostile mesh: ${figures.queries} answers, ${figures.checked} equal to the uncached answer, ${figures.refused} clean refusals (429); ${figures.notes.join('; ')}`) // eslint-disable-line no-console
    })

    it('members share chunks; a node without the swarm key (or with another) cannot connect to any of them', async () => {
      const [a, , c] = nodes as [CliNode, CliNode, CliNode]
      // a real node without the key, mDNS on: it finds the members but cannot talk to them
      const stranger = await start('stranger', 18_209)
      nodes.push(stranger)
      const addresses = await Promise.all(nodes.slice(0, 3).map(address))
      const otherKey = join(dir, 'other.key')
      await writeSwarmKey(otherKey)
      for (const swarmKey of [undefined, await readFile(otherKey, 'utf8')]) {
        const { result } = await attack({ mode: 'outsider', peers: addresses, swarmKey }, 'outsider')
        expect(result.dialed, JSON.stringify(result)).to.deep.equal([])
        expect(result.connected).to.equal(0)
        expect(result.fetched).to.equal(0)
      }
      // meanwhile the members work as a mesh: C answers from A's chunks
      await query(a, `${LONG_PROMPT}Which planet has the most moons?`)
      const aChunks = (await status(a)).cache.chunks
      await waitUntil('A\'s catalog to reach C', async () => await holds(c, a, aChunks))
      const res = await query(c, `${LONG_PROMPT}Which planet is closest to the sun?`)
      expect(res.cache.source).to.equal('remote')
      // the stranger has been trying all along (mDNS): nobody let it in
      const strangerStatus = await status(stranger)
      expect(strangerStatus.peers.filter((p: any) => p.connected)).to.deep.equal([])
      for (const n of nodes.slice(0, 3)) expect((await status(n)).peers.map((p: any) => p.peerId)).to.not.include(stranger.peerId)
      await stranger.stop()
      nodes.pop()
    })

    it('rejects catalogs forged for another peer, and cuts off a member that lies about its chunks; answers stay exact', async () => {
      const [a, b, c] = nodes as [CliNode, CliNode, CliNode]
      const { result: forger } = await attack({ mode: 'forger', peers: await Promise.all([a, b, c].map(address)), swarmKey: await readFile(swarmKeyFile, 'utf8'), victim: a.peerId }, 'forger')
      expect(forger.ready).to.equal(true)
      expect(forger.forgedSent).to.equal(9)
      // every member takes the liar's own catalog (it may claim what it likes)...
      await waitUntil('the liar\'s catalog to reach C', async () => (await status(c)).peers.some((p: any) => p.peerId === forger.peerId && p.catalog?.entries === 1_000_000))
      // ...but nobody believes the forgeries about A
      for (const n of [b, c]) {
        const seen = (await status(n)).peers.find((p: any) => p.peerId === a.peerId)
        expect(seen?.catalog?.entries, 'A\'s catalog as seen by a member').to.be.below(1_000_000)
      }
      // three prefixes only A computed: C asks the liar first (it claims a longer run than A), rejects its
      // chunk (not the one the key names), gets the prefix from A, and after the third lie cuts it off
      for (let i = 1; i <= 3; i++) {
        const prefix = `Lesson ${i} of a course on geology that only node A has seen. Rocks form in layers over time. `.repeat(3)
        await query(a, `${prefix}What is basalt?`)
        const aChunks = (await status(a)).cache.chunks
        await waitUntil('A\'s catalog to reach C', async () => await holds(c, a, aChunks))
        // a question longer than a block: the liar, which claims everything, offers the longest run
        const res = await query(c, `${prefix}What is granite? Describe its minerals, how it forms deep underground from slowly cooling magma, and where on earth it is found.`)
        expect(res.cache.source, JSON.stringify(res.cache)).to.equal('remote')
        expect(res.cache.peers).to.deep.equal([a.peerId])
      }
      await waitUntil('C to cut the liar off', async () => (await status(c)).bannedPeers.some((p: any) => p.peerId === forger.peerId))
      const banned = (await status(c)).bannedPeers.find((p: any) => p.peerId === forger.peerId)
      expect(banned.reason).to.match(/not the one its key names/)
      // and an operator sees it in /metrics
      expect(await metric(c, 'promptmesh_fetch_chunks_rejected_total')).to.be.at.least(1)
      expect(await metric(c, 'promptmesh_peer_cutoffs_total')).to.be.at.least(1)
      await waitUntil('the liar to be disconnected from C', async () => !(await status(c)).peers.some((p: any) => p.peerId === forger.peerId && p.connected))
    })

    it('cuts off members flooding a node with bogus requests, well-formed or garbage; the node answers exactly all along', async () => {
      const [a] = nodes as [CliNode, CliNode, CliNode]
      const swarmKey = await readFile(swarmKeyFile, 'utf8')
      // counters are cumulative over this describe's cases: each flood must move them itself
      const offences = async (): Promise<number> => await metric(a, 'promptmesh_peer_rate_limited_total') +
        await metric(a, 'promptmesh_peer_limit_offences_total') + await metric(a, 'promptmesh_peer_fault_offences_total')
      const cutoffs = async (): Promise<number> => await metric(a, 'promptmesh_peer_cutoffs_total')
      const before = { offences: await offences(), cutoffs: await cutoffs(), rateLimited: await metric(a, 'promptmesh_peer_rate_limited_total') }
      // well-formed requests for made-up keys: cut off once past its request rate (a burst of 400)
      const flood = attack({ mode: 'flooder', peers: [await address(a)], swarmKey, count: 3_000 }, 'flooder')
      await query(a, `${LONG_PROMPT}What is a comet made of?`)
      const { result } = await flood
      expect(result.connected, JSON.stringify(result)).to.equal(false)
      expect(result.sent).to.be.within(400, 3_000 - 1)
      // cut off for an offence, which the node counts: usually its rate (BUSY), but on a loaded machine a
      // slow flooder may stay under the rate and be cut off for streams it broke or held open instead (seen
      // once: 1,080 NOT_FOUND, 6 reset, no BUSY read before the connection closed)
      const afterFlood = { offences: await offences(), cutoffs: await cutoffs() }
      expect(afterFlood.offences, JSON.stringify(result)).to.be.above(before.offences)
      expect(afterFlood.cutoffs).to.be.above(before.cutoffs)
      figures.notes.push(`request flood: cut off after ${result.sent} requests (${JSON.stringify(result.statuses)}, then ${result.refused} refused)`)
      // garbage among them: cut off at once
      const { result: garbage } = await attack({ mode: 'flooder', peers: [await address(a)], swarmKey, count: 3_000, garbageEvery: 4 }, 'flooder')
      expect(garbage.connected).to.equal(false)
      expect(garbage.sent).to.be.below(400)
      figures.notes.push(`garbage flood: cut off after ${garbage.sent} requests`)
      const banned = (await status(a)).bannedPeers.map((p: any) => p.peerId)
      expect(banned).to.include.members([result.peerId, garbage.peerId])
      expect(await metric(a, 'promptmesh_peers_banned')).to.be.at.least(2)
      const table = await namespace().exec(process.execPath, [BIN, 'status', '--api', a.api])
      expect(table).to.match(/cut off \(\d+\)/)
      expect(table).to.include(result.peerId)
      // the garbage flood was cut off for its garbage, well before any rate limit
      expect(await offences()).to.be.above(afterFlood.offences)
      expect(await cutoffs()).to.be.above(afterFlood.cutoffs)
      figures.notes.push(`rate-limited requests: ${await metric(a, 'promptmesh_peer_rate_limited_total') - before.rateLimited}`)
      await query(a, `${LONG_PROMPT}What is a meteor?`)
    })

    it('a chunk corrupted on disk is never served nor used: removed, reported, and the answers stay exact', async () => {
      const [a, , c] = nodes as [CliNode, CliNode, CliNode]
      const prefix = 'A chemistry course that node A alone has studied so far. Acids donate protons to bases. '.repeat(3)
      const first = await query(a, `${prefix}What is an acid?`)
      const aChunks = (await status(a)).cache.chunks
      await waitUntil('A\'s catalog to reach C', async () => await holds(c, a, aChunks))
      // flip a byte in the middle of every chunk file A holds
      const root = join(dir, 'a', 'cache', 'chunks')
      let damaged = 0
      for (const shard of await readdir(root)) {
        for (const name of await readdir(join(root, shard))) {
          const path = join(root, shard, name)
          const bytes = await readFile(path)
          const at = CHUNK_FILE_HEADER_BYTES + ((bytes.length - CHUNK_FILE_HEADER_BYTES) >> 1)
          bytes[at] = (bytes[at] as number) ^ 0x20
          await writeFile(path, bytes)
          damaged++
        }
      }
      expect(damaged).to.equal(aChunks)
      figures.notes.push(`${damaged} chunk files corrupted on disk`)
      const res = await query(c, `${prefix}What is a base?`)
      expect(res.cache.remoteTokens, JSON.stringify(res.cache)).to.equal(0)
      // A may answer from the state it kept on tmpfs when it computed the prompt (not from the chunks): exact either way
      const again = await query(a, `${prefix}What is an acid?`)
      expect(again.text).to.equal(first.text)
      const s = await status(a)
      expect(s.cache.corruptRemoved).to.be.greaterThan(0)
      expect(s.cache.lastProblem).to.match(/corrupt chunk/)
    })

    it('a serving peer killed mid-transfer: the answer stays exact, and the peer comes back with a consistent store', async () => {
      const [a, b] = nodes as [CliNode, CliNode, CliNode]
      const prefix = 'Completely new few-shot examples about biology that only node B has computed so far. '.repeat(10)
      await query(b, `${prefix}What is a cell?`)
      const bChunks = (await status(b)).cache.chunks
      await waitUntil('B\'s catalog to reach A', async () => await holds(a, b, bChunks))
      await namespace().exec('ip', ['link', 'set', 'lo', 'mtu', '1500'])
      // slow enough that the rest of the transfer outlasts noticing the first chunk and killing B (chunks
      // travel encoded, ~0.85 of their size and less for the tiny model's)
      await namespace().exec('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '256kbit', 'burst', '16kb', 'latency', '2000ms'])
      let back: CliNode | undefined
      try {
        const bytesIn = async (): Promise<number> => {
          const text = await namespace().exec('curl', ['-s', `${a.api}/metrics`])
          return Number(/^promptmesh_kv_bytes_received_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? NaN)
        }
        const before = await bytesIn()
        const pending = query(a, `${prefix}What is a gene?`)
        await waitUntil('the first chunk to arrive', async () => await bytesIn() > before, 90_000)
        b.child.kill('SIGKILL')
        const res = await pending
        expect(res.cache.reusedTokens).to.be.below(Math.floor(res.promptTokens / 32) * 32)
      } finally {
        await namespace().exec('tc', ['qdisc', 'del', 'dev', 'lo', 'root'])
        await namespace().exec('ip', ['link', 'set', 'lo', 'mtu', '65536'])
        // B restarts on the same data (also when the above failed: the tests after this one need it)
        if (b.child.exitCode == null && b.child.signalCode == null) {
          const exited = new Promise((resolve) => b.child.once('exit', resolve))
          b.child.kill('SIGKILL')
          await exited
        }
        back = await member('b', 18_202)
        nodes[1] = back
      }
      // its store reopens whole, and it serves again
      const s = await status(back)
      expect(s.peerId).to.equal(b.peerId)
      expect(s.cache.chunks).to.equal(bChunks)
      expect(s.cache.corruptRemoved).to.equal(0)
      await waitUntil('B\'s catalog to reach A again', async () => await holds(a, back, bChunks))
    })

    it('50 concurrent queries: each answer is the uncached one or a clean 429, and every node stays up', async () => {
      const [a, b, c] = nodes as [CliNode, CliNode, CliNode]
      const prompts = [0, 1, 2, 3, 4].map((i) => `${LONG_PROMPT}Question ${i}: which planet is number ${i + 1} from the sun?`)
      const jobs = Array.from({ length: 50 }, (_, i) => ({ api: [a, b, c][i % 3]?.api, prompt: prompts[i % 5] }))
      // one client process in the namespace firing all fifty at once
      const script = `
        const jobs = ${JSON.stringify(jobs)}
        const out = await Promise.all(jobs.map(async (j) => {
          const res = await fetch(j.api + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: j.prompt, max_tokens: ${MAX} }) })
          const body = await res.json()
          return { status: res.status, tokens: body.promptmesh?.tokens, error: body.error }
        }))
        process.stdout.write(JSON.stringify(out))`
      const answers = JSON.parse(await namespace().exec(process.execPath, ['--input-type=module', '-e', script])) as Array<{ status: number, tokens?: number[], error?: any }>
      expect(answers).to.have.length(50)
      let ok = 0
      for (const [i, r] of answers.entries()) {
        figures.queries++
        if (r.status === 200) {
          expect(r.tokens, `answer ${i}`).to.deep.equal(await cold(jobs[i]?.prompt as string))
          figures.checked++
          ok++
        } else {
          expect(r.status, JSON.stringify(r)).to.equal(429)
          expect(r.error).to.include({ type: 'rate_limit_error', code: 'queue_full' })
          figures.refused++
        }
      }
      expect(ok).to.be.greaterThan(0)
      for (const n of [a, b, c]) expect((await status(n)).peerId).to.equal(n.peerId)
    })
  })
})
