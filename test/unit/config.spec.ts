import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { envName, parseWithConfig } from '../../src/cli/args.js'
import { START_OPTIONS } from '../../src/cli/start.js'

const options = {
  model: { type: 'string' as const },
  'data-dir': { type: 'string' as const },
  peer: { type: 'string' as const, multiple: true },
  'no-mdns': { type: 'boolean' as const }
}

describe('configuration: flags, environment, config file', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-config-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('names environment variables after flags', () => {
    expect(envName('data-dir')).to.equal('PROMPTMESH_DATA_DIR')
  })

  it('takes the command line over the environment over the config file', async () => {
    const config = join(dir, 'promptmesh.json')
    await writeFile(config, JSON.stringify({ model: 'from-file.gguf', 'data-dir': '/file', peer: ['/ip4/1.2.3.4/tcp/1/p2p/x'], 'no-mdns': true }))
    const p = await parseWithConfig(['--config', config, '--model', 'from-flag.gguf'], options, 'usage', { PROMPTMESH_DATA_DIR: '/env', PROMPTMESH_NO_MDNS: 'false' })
    expect(p.values.model).to.equal('from-flag.gguf')
    expect(p.values['data-dir']).to.equal('/env')
    expect(p.values['no-mdns']).to.equal(false)
    expect(p.values.peer).to.deep.equal(['/ip4/1.2.3.4/tcp/1/p2p/x'])
  })

  it('reads lists from the environment, comma-separated, and the config path from PROMPTMESH_CONFIG', async () => {
    const config = join(dir, 'c.json')
    await writeFile(config, JSON.stringify({ model: 'm.gguf' }))
    const p = await parseWithConfig([], options, 'usage', { PROMPTMESH_PEER: '/ip4/1.1.1.1/tcp/1/p2p/a, /ip4/2.2.2.2/tcp/2/p2p/b', PROMPTMESH_CONFIG: config })
    expect(p.values.peer).to.deep.equal(['/ip4/1.1.1.1/tcp/1/p2p/a', '/ip4/2.2.2.2/tcp/2/p2p/b'])
    expect(p.values.model).to.equal('m.gguf')
  })

  it('explains a broken config file', async () => {
    const bad = join(dir, 'bad.json')
    await writeFile(bad, '{"model": ')
    const err = await parseWithConfig(['--config', bad], options, 'usage', {}).catch((e: Error) => e)
    expect(err).to.have.property('name', 'UsageError')
    expect((err as Error).message).to.match(/not valid JSON/)
    await writeFile(bad, JSON.stringify({ modle: 'typo.gguf' }))
    expect(((await parseWithConfig(['--config', bad], options, 'usage', {}).catch((e: Error) => e)) as Error).message).to.match(/unknown setting\(s\) modle/)
  })

  it('accepts the shipped example config for `start`', async () => {
    const example = fileURLToPath(new URL('../../../deploy/config.example.json', import.meta.url))
    const p = await parseWithConfig(['--config', example], START_OPTIONS, 'usage', {})
    expect(p.values.api).to.equal('0.0.0.0:8080')
    expect(p.values.listen).to.deep.equal(['/ip4/0.0.0.0/tcp/4001'])
  })

  it('model pull without internet says so and what to do, without a stack trace', async function () {
    this.timeout(60_000)
    const bin = fileURLToPath(new URL('../../../bin/promptmesh.js', import.meta.url))
    const res = await new Promise<{ code: number, stderr: string }>(resolve => {
      execFile(process.execPath, [bin, 'model', 'pull', 'hf:promptmesh-test/does-not-exist-GGUF:Q8_0', '--dir', dir], { timeout: 50_000 }, (err, _stdout, stderr) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr }))
    })
    expect(res.code).to.equal(1)
    expect(res.stderr).to.match(/ModelLoadError: cannot download hf:promptmesh-test\/does-not-exist-GGUF:Q8_0/)
    expect(res.stderr).to.match(/pass its path with --model/)
    expect(res.stderr).to.not.match(/\n\s+at /)
  })
})
