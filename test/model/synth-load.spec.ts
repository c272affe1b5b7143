import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { getLlama, LlamaLogLevel } from 'node-llama-cpp'
import { synthesizeModel } from '../../src/model/synth.js'
import type { Llama, LlamaContext, LlamaModel, Token } from 'node-llama-cpp'

const N = 12
const QUESTION = 'The answer to the following question is'
// more than 64 tokens: pushes the differing opening out of tiny-gemma3's sliding window
const FILLER = ' Read the passage and choose the best option from the choices given below, then explain why the other statements are not correct.'.repeat(4)

describe('synthetic models load in node-llama-cpp', function () {
  this.timeout(600_000)
  let dir: string
  let llama: Llama

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'promptmesh-synth-load-'))
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error })
  })
  after(async () => {
    await llama?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  for (const shape of ['tiny-llama', 'tiny-gemma3'] as const) {
    describe(shape, () => {
      let model: LlamaModel
      let context: LlamaContext

      before(async () => {
        const { path } = await synthesizeModel({ shape, out: join(dir, `${shape}.gguf`), seed: 1 })
        model = await llama.loadModel({ modelPath: path })
        context = await model.createContext({ contextSize: 2048, threads: 2, flashAttention: false, sequences: 1, swaFullCache: true })
      })
      after(async () => {
        await context?.dispose()
        await model?.dispose()
      })

      /** Greedy continuation of `text` from an empty sequence. */
      async function greedy (text: string): Promise<number[]> {
        const sequence = context.getSequence()
        try {
          const bos = model.tokens.bos
          expect(bos).to.not.equal(null)
          const out: number[] = []
          for await (const t of sequence.evaluate([bos as Token, ...model.tokenize(text)], { temperature: 0 })) {
            out.push(t)
            if (out.length >= N) break
          }
          return out
        } finally {
          sequence.dispose()
        }
      }

      it('tokenizes English at more than 2 characters per token', () => {
        expect(model.tokenize(QUESTION).length).to.be.lessThan(QUESTION.length / 2)
      })

      it('generates context-dependent greedy output, not an echo of the last token', async () => {
        const a = await greedy(`Question: Which of the following is the capital of France? ${QUESTION}`)
        const b = await greedy(`Question: What is the boiling point of water at sea level? ${QUESTION}`)
        expect(a).to.have.length(N)
        expect(a).to.not.deep.equal(b)
        expect(new Set(a).size).to.be.greaterThan(1)
        expect(new Set(b).size).to.be.greaterThan(1)
      })

      it('lets text beyond the sliding window change the output', async () => {
        const a = await greedy(`History question.${FILLER} ${QUESTION}`)
        const b = await greedy(`Biology question.${FILLER} ${QUESTION}`)
        expect(model.tokenize(FILLER).length).to.be.greaterThan(64)
        expect(a).to.not.deep.equal(b)
      })

      it('is deterministic across runs', async () => {
        const text = `Question: Which statement best describes the effect?${FILLER} ${QUESTION}`
        expect(await greedy(text)).to.deep.equal(await greedy(text))
      })
    })
  }
})
