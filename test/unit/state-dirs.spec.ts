import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { createStateDir } from '../../src/engine/state-files.js'

describe('state directories on tmpfs', () => {
  let base: string
  beforeEach(async () => { base = await mkdtemp(join(tmpdir(), 'pm-statedirs-')) })
  afterEach(async () => { await rm(base, { recursive: true, force: true }) })

  it('removes what processes that are gone left behind, and nothing else', async () => {
    // a pid that existed and has exited
    const gone = spawnSync(process.execPath, ['-e', '0']).pid as number
    const orphan = join(base, 'promptmesh-orphan')
    await mkdir(orphan)
    await writeFile(join(orphan, 'owner.pid'), String(gone))
    await writeFile(join(orphan, 'prefix-1.ggsq'), Buffer.alloc(1000))
    const live = join(base, 'promptmesh-live')
    await mkdir(live)
    await writeFile(join(live, 'owner.pid'), String(process.pid))
    const unmarked = join(base, 'promptmesh-unmarked')
    await mkdir(unmarked)
    const foreign = join(base, 'someone-else')
    await mkdir(foreign)
    await writeFile(join(foreign, 'owner.pid'), String(gone))

    const { dir, removedStale } = await createStateDir(base)
    expect(removedStale).to.equal(1)
    expect(existsSync(orphan)).to.equal(false)
    expect([live, unmarked, foreign].map(existsSync)).to.deep.equal([true, true, true])
    expect(await readFile(join(dir, 'owner.pid'), 'utf8')).to.equal(String(process.pid))
    // the next process sees this one alive
    expect((await createStateDir(base)).removedStale).to.equal(0)
    expect(existsSync(dir)).to.equal(true)
  })
})
