import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { ChunkStore } from '../../src/cache/chunk-store.js'
import { CHUNK_FILE_HEADER_BYTES } from '../../src/cache/constants.js'

const key = (n: number): string => createHash('sha256').update(String(n)).digest('hex')
const payload = (n: number, size = 1000): Buffer => Buffer.alloc(size, n % 251)
const fileOf = (dir: string, k: string): string => join(dir, 'chunks', k.slice(0, 2), k)

describe('chunk store', () => {
  let dir: string

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-store-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('returns what was put, across reopen', async () => {
    const store = await ChunkStore.open({ dir })
    expect(await store.put(key(1), payload(1))).to.equal(true)
    expect(await store.put(key(1), payload(1))).to.equal(false)
    const again = await ChunkStore.open({ dir })
    expect(again.has(key(1))).to.equal(true)
    expect((await again.get(key(1)))?.equals(payload(1))).to.equal(true)
    expect(await again.get(key(2))).to.equal(undefined)
  })

  it('removes a bit-flipped chunk instead of serving it', async () => {
    const store = await ChunkStore.open({ dir })
    await store.put(key(1), payload(1))
    const file = await readFile(fileOf(dir, key(1)))
    file.writeUInt8(file.readUInt8(CHUNK_FILE_HEADER_BYTES + 10) ^ 0x01, CHUNK_FILE_HEADER_BYTES + 10)
    await writeFile(fileOf(dir, key(1)), file)
    expect(await store.get(key(1))).to.equal(undefined)
    expect(store.has(key(1))).to.equal(false)
    expect(store.stats().corruptRemoved).to.equal(1)
  })

  it('reads into memory the caller gives, and still refuses damaged or replaced files', async () => {
    const store = await ChunkStore.open({ dir })
    for (const n of [1, 2, 3]) await store.put(key(n), payload(n))
    const memory = Buffer.alloc(4096, 0xee)
    const got = await store.get(key(1), n => memory.subarray(0, n))
    expect(got?.equals(payload(1))).to.equal(true)
    expect(got?.buffer === memory.buffer, 'read in place').to.equal(true)
    // bit flip: same size, read into the memory, refused
    const file = await readFile(fileOf(dir, key(2)))
    file.writeUInt8(file.readUInt8(CHUNK_FILE_HEADER_BYTES + 3) ^ 0x80, CHUNK_FILE_HEADER_BYTES + 3)
    await writeFile(fileOf(dir, key(2)), file)
    expect(await store.get(key(2), n => memory.subarray(0, n))).to.equal(undefined)
    // replaced by a longer file behind the store's back: refused without being read
    await writeFile(fileOf(dir, key(3)), Buffer.concat([await readFile(fileOf(dir, key(3))), Buffer.alloc(5000)]))
    let asked = 0
    expect(await store.get(key(3), n => { asked++; return memory.subarray(0, n) })).to.equal(undefined)
    expect(asked, 'no memory asked for a file of the wrong size').to.equal(0)
    expect(store.stats().corruptRemoved).to.equal(2)
    expect([store.has(key(1)), store.has(key(2)), store.has(key(3))]).to.deep.equal([true, false, false])
  })

  it('drops truncated and foreign files when it reopens', async () => {
    const store = await ChunkStore.open({ dir })
    await store.put(key(1), payload(1))
    await store.put(key(2), payload(2))
    await truncate(fileOf(dir, key(1)), 500)
    await writeFile(join(dir, 'chunks', 'zz-not-a-chunk'), 'x')
    const again = await ChunkStore.open({ dir })
    expect(again.has(key(1))).to.equal(false)
    expect(again.has(key(2))).to.equal(true)
    expect(again.bytes).to.equal(1000 + CHUNK_FILE_HEADER_BYTES)
  })

  it('keeps its byte budget by evicting the least recently used', async () => {
    const per = 1000 + CHUNK_FILE_HEADER_BYTES
    const store = await ChunkStore.open({ dir, maxBytes: per * 3 })
    for (const n of [1, 2, 3]) await store.put(key(n), payload(n))
    await store.get(key(1)) // 1 is now more recent than 2
    await store.put(key(4), payload(4))
    expect(store.has(key(2))).to.equal(false)
    expect([1, 3, 4].every(n => store.has(key(n)))).to.equal(true)
    expect(store.bytes).to.be.at.most(per * 3)
    expect(await store.diskBytes()).to.equal(store.bytes)
    expect(store.stats().evictions).to.equal(1)
  })

  it('reopens consistent after kill -9 in the middle of writes', async function () {
    this.timeout(60_000)
    const storeModule = fileURLToPath(new URL('../../src/cache/chunk-store.js', import.meta.url))
    const script = `
      import { ChunkStore } from ${JSON.stringify(storeModule)}
      import { createHash } from 'node:crypto'
      const store = await ChunkStore.open({ dir: ${JSON.stringify(dir)}, maxBytes: 40 * 300_000 })
      for (let n = 0; ; n++) {
        await store.put(createHash('sha256').update(String(n)).digest('hex'), Buffer.alloc(300_000, n % 251))
        if (n === 20) process.stdout.write('busy\\n')
      }`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', () => resolve())
      child.on('exit', code => reject(new Error(`writer exited early with ${code}`)))
    })
    await new Promise(resolve => setTimeout(resolve, 150)) // let it get into more writes and evictions
    child.kill('SIGKILL')
    await new Promise(resolve => child.on('exit', resolve))

    const store = await ChunkStore.open({ dir, maxBytes: 40 * 300_000 })
    expect(store.count).to.be.greaterThan(0)
    expect(store.bytes).to.be.at.most(40 * 300_000)
    expect(await readdir(join(dir, 'tmp'))).to.deep.equal([])
    for (const k of [...store.keys()]) {
      const got = await store.get(k)
      expect(got, `chunk ${k} readable`).to.not.equal(undefined)
      expect(got?.length).to.equal(300_000)
    }
    expect(store.stats().corruptRemoved).to.equal(0)
  })
})
