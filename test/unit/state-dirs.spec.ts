import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { createStateDir, StateFiles } from '../../src/engine/state-files.js'

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

describe('kept prefix states', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-statefiles-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('finds the newest state beginning with a prefix, and forgets what it evicts or drops', async () => {
    const states = new StateFiles(dir, 2500)
    const ab = await states.put('b', Buffer.alloc(1000, 1), ['a', 'b'])
    expect(states.beginning('a')).to.deep.equal({ key: 'b', path: ab })
    expect(states.get('a'), 'an exact lookup never returns a longer state').to.equal(undefined)
    const abc = await states.put('c', Buffer.alloc(1000, 2), ['a', 'b', 'c'])
    expect(states.beginning('a')?.path).to.equal(abc)
    expect(states.beginning('b')?.path).to.equal(abc)
    await states.drop('c')
    expect(existsSync(abc)).to.equal(false)
    expect(states.beginning('c')).to.equal(undefined)
    // what 'c' had taken over goes back to 'b'
    expect(states.beginning('a')?.path).to.equal(ab)
    await states.put('x', Buffer.alloc(1000, 3), ['x'])
    await states.put('y', Buffer.alloc(1000, 4), ['y'])
    // over the budget: the least recently used ('b') went
    expect(existsSync(ab)).to.equal(false)
    expect(states.get('b')).to.equal(undefined)
    expect(states.beginning('x')?.key).to.equal('x')
  })
})
