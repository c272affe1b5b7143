import { createHash } from 'node:crypto'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { readGgufFileInfo } from 'node-llama-cpp'
import { GgmlType, tensorBytes } from '../../src/model/gguf-writer.js'
import { f16Bits, SHAPES, synthesizeModel } from '../../src/model/synth.js'
import { buildVocab, TokenType } from '../../src/model/vocab.js'
import type { ShapeName } from '../../src/model/synth.js'

const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex')

describe('synthetic GGUF models', function () {
  this.timeout(120_000)
  let dir: string

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'promptmesh-synth-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  for (const shape of ['tiny-llama', 'tiny-gemma3'] as const satisfies readonly ShapeName[]) {
    describe(shape, () => {
      it('same seed gives a byte-identical file', async () => {
        const a = await synthesizeModel({ shape, out: join(dir, `${shape}-a.gguf`), seed: 7 })
        const b = await synthesizeModel({ shape, out: join(dir, `${shape}-b.gguf`), seed: 7 })
        expect(a.bytes).to.equal(b.bytes)
        expect(await sha256(a.path)).to.equal(await sha256(b.path))
      })

      it('a different seed gives different weights', async () => {
        const a = await synthesizeModel({ shape, out: join(dir, `${shape}-s1.gguf`), seed: 1 })
        const b = await synthesizeModel({ shape, out: join(dir, `${shape}-s2.gguf`), seed: 2 })
        expect(await sha256(a.path)).to.not.equal(await sha256(b.path))
      })

      it('writes a GGUF v3 header that node-llama-cpp parses', async () => {
        const progress: number[] = []
        const res = await synthesizeModel({ shape, out: join(dir, `${shape}-h.gguf`), seed: 3, onProgress: f => progress.push(f) })
        const fh = await open(res.path, 'r')
        const head = Buffer.alloc(24)
        await fh.read(head, 0, 24, 0)
        const size = (await fh.stat()).size
        await fh.close()
        expect(head.subarray(0, 4).toString('latin1')).to.equal('GGUF')
        expect(head.readUInt32LE(4)).to.equal(3)
        expect(size).to.equal(res.bytes)
        expect(progress.at(-1)).to.equal(1)

        const spec = SHAPES[shape]
        const info = await readGgufFileInfo(res.path, { readTensorInfo: true, logWarnings: false })
        const meta = info.metadata as unknown as Record<string, Record<string, unknown>>
        expect(info.version).to.equal(3)
        expect(meta.general?.architecture).to.equal(spec.arch)
        expect(meta.general?.name).to.equal(`promptmesh synthetic ${shape} seed 3`)
        expect(info.tensorInfo?.find(t => t.name === 'token_embd.weight')?.dimensions.map(Number)).to.deep.equal([spec.nEmbd, spec.nVocab])
        expect(info.tensorInfo?.some(t => t.name === 'output.weight')).to.equal(!spec.tiedOutput)
      })
    })
  }

  it('sizes tensors like ggml does', () => {
    expect(tensorBytes([640, 262_144], GgmlType.Q8_0)).to.equal(640 / 32 * 34 * 262_144)
    expect(tensorBytes([128, 3], GgmlType.F16)).to.equal(768)
    expect(() => tensorBytes([48], GgmlType.Q8_0)).to.throw(/divisible/)
  })

  it('converts float32 to half bits', () => {
    expect([1, -2, 0.5, 65_504, 0, 2 ** -24, 1e9].map(f16Bits)).to.deep.equal([0x3c00, 0xc000, 0x3800, 0x7bff, 0, 1, 0x7c00])
  })
})

describe('synthetic vocabulary', () => {
  it('has the SPM layout: <unk> <s> </s>, 256 byte tokens, unique pieces, exact size', () => {
    const v = buildVocab(2048, { turnTokens: true })
    expect(v.tokens.slice(0, 3)).to.deep.equal(['<unk>', '<s>', '</s>'])
    expect(v.tokens[3 + 0x0a]).to.equal('<0x0A>')
    expect(v.types[3 + 0xff]).to.equal(TokenType.BYTE)
    expect(v.tokens[v.startOfTurn ?? -1]).to.equal('<start_of_turn>')
    expect(v.tokens).to.have.length(2048)
    expect(new Set(v.tokens).size).to.equal(2048)
  })

  it('is deterministic and prefix-closed, so every normal piece is reachable by SPM merges', () => {
    const v = buildVocab(4096)
    expect(buildVocab(4096).tokens).to.deep.equal(v.tokens)
    const pieces = new Set(v.tokens)
    for (const [i, t] of v.tokens.entries()) {
      if (v.types[i] !== TokenType.NORMAL || i >= v.firstFiller) continue
      const chars = Array.from(t)
      for (let n = 1; n < chars.length; n++) expect(pieces.has(chars.slice(0, n).join('')), t).to.equal(true)
    }
  })
})
