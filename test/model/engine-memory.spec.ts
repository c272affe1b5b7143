import { defaultLogger } from '@libp2p/logger'
import { expect } from 'chai'
import { Engine } from '../../src/engine/engine.js'
import { testModel } from '../fixtures/models.js'

describe('engine memory', function () {
  this.timeout(600_000)
  let engine: Engine

  before(async () => {
    engine = await Engine.load({ model: await testModel('tiny-gemma3'), threads: 1, contextSize: 512, log: defaultLogger().forComponent('test') })
  })
  after(async () => { await engine?.close() })

  it('keeps no copy of the vocabulary in the JS heap (llama.cpp has its own), only its size, and still tokenizes and answers', async () => {
    const ggml = (engine.modelHandle.fileInfo.metadata as unknown as { tokenizer: { ggml: Record<string, unknown[]> } }).tokenizer.ggml
    const vocabulary = ggml.tokens as unknown[]
    expect(vocabulary.length).to.be.greaterThan(256)
    expect(vocabulary.filter(t => t !== undefined)).to.have.length(0)
    // what node-llama-cpp reads from it afterwards: the size
    expect([...engine.modelHandle.iterateAllTokens()]).to.have.length(vocabulary.length)
    const text = 'Which planet is known as the red planet?'
    const tokens = engine.tokenize(text)
    expect(engine.detokenize(tokens).trim()).to.equal(text)
    await engine.lock(async () => {
      await engine.reset()
      const out = await engine.generate(tokens, { maxTokens: 4 })
      expect(out).to.have.length(4)
    })
  })
})
