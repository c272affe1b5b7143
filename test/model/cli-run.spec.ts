import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'

const bin = fileURLToPath(new URL('../../../bin/promptmesh.js', import.meta.url))
const exec = promisify(execFile)

async function promptmesh (...args: string[]): Promise<{ stdout: string, stderr: string }> {
  return await exec(process.execPath, [bin, ...args], { maxBuffer: 16 * 1024 * 1024 })
}

describe('promptmesh run (across processes)', function () {
  this.timeout(600_000)
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'pm-cli-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  for (const shape of ['tiny-llama', 'tiny-gemma3'] as const) {
    it(`a second process reuses the first one's cache directory and answers the same (${shape})`, async () => {
      const model = await testModel(shape)
      const cacheDir = join(dir, shape)
      const args = ['run', '--model', model, '--cache-dir', cacheDir, '--max-tokens', '12', '--threads', '2', '--json']
      const cold = JSON.parse((await promptmesh(...args, '--no-cache', LONG_PROMPT)).stdout)
      const first = JSON.parse((await promptmesh(...args, LONG_PROMPT)).stdout)
      const second = JSON.parse((await promptmesh(...args, LONG_PROMPT)).stdout)
      for (const field of ['text', 'tokens', 'promptTokens', 'ttftMs', 'ttltMs', 'cache']) expect(second).to.have.property(field)
      expect(first.cache.source).to.equal('none')
      expect(second.cache).to.include({ source: 'local', bytesFetched: 0 })
      expect(second.cache.reusedTokens).to.equal(second.promptTokens - 2) // all but the last two (FINAL_EVAL_TOKENS)
      expect(second.cache.peers).to.deep.equal([])
      expect(second.tokens).to.have.length(12)
      expect(second.tokens).to.deep.equal(cold.tokens)
      expect(first.tokens).to.deep.equal(cold.tokens)
      expect(second.text).to.equal(cold.text)
    })
  }

  it('explains a missing model without a stack trace', async () => {
    const err = await promptmesh('run', '--model', join(dir, 'nope.gguf'), '--cache-dir', dir, 'hi').catch((e: { code: number, stderr: string }) => e)
    expect(err).to.have.property('code', 1)
    expect((err as { stderr: string }).stderr).to.match(/ModelLoadError: model file .*nope\.gguf cannot be read/)
    expect((err as { stderr: string }).stderr).to.not.match(/\n\s+at /)
  })

  it('refuses blocks longer than the model\'s sliding window, which could never be cached', async () => {
    const err = await promptmesh('run', '--model', await testModel('tiny-gemma3'), '--cache-dir', dir, '--block-tokens', '128', 'hi').catch((e: { code: number, stderr: string }) => e)
    expect(err).to.have.property('code', 1)
    expect((err as { stderr: string }).stderr).to.match(/BlockTooLongError: blocks of 128 tokens are longer than this model's sliding window \(64\).*--block-tokens 64/)
  })

  it('rejects a bad flag with usage and exit code 2', async () => {
    const err = await promptmesh('run', '--max-tokens', 'many', 'hi').catch((e: { code: number, stderr: string }) => e)
    expect(err).to.have.property('code', 2)
  })
})
