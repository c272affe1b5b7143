import { SHAPES, synthesizeModel } from '../model/synth.js'
import type { ShapeName } from '../model/synth.js'
import { int, parse, required, UsageError } from './args.js'

const SYNTH_USAGE = `promptmesh model synth --shape <${Object.keys(SHAPES).join('|')}> --out FILE [--seed N]

Writes a deterministic synthetic GGUF model. Its weights are pseudo-random: it produces meaningless
text and exists to test and measure promptmesh where no real weights can be downloaded.`

const USAGE = `promptmesh model <synth> ...

  ${SYNTH_USAGE.split('\n')[0] ?? ''}`

export async function modelCommand (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'synth') return await synth(rest)
  throw new UsageError(`unknown model command ${JSON.stringify(sub ?? '')}\n\n${USAGE}`)
}

async function synth (argv: string[]): Promise<number> {
  const p = parse(argv, { shape: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' } }, SYNTH_USAGE)
  if (p.values.help === true) { process.stdout.write(`${SYNTH_USAGE}\n`); return 0 }
  const shape = required(p, 'shape', SYNTH_USAGE)
  if (!(shape in SHAPES)) throw new UsageError(`unknown shape ${JSON.stringify(shape)}\n\n${SYNTH_USAGE}`)
  const out = required(p, 'out', SYNTH_USAGE)
  const seed = int(p, 'seed', 0)
  let shown = -1
  const res = await synthesizeModel({
    shape: shape as ShapeName,
    out,
    seed,
    onProgress: process.stderr.isTTY
      ? f => {
        const pct = Math.floor(f * 100)
        if (pct !== shown) { shown = pct; process.stderr.write(`\rwriting ${shape}: ${pct}%`) }
      }
      : undefined
  })
  if (process.stderr.isTTY) process.stderr.write('\n')
  process.stdout.write(`${res.path} (${shape}, ${(res.bytes / 1e6).toFixed(1)} MB, seed ${seed ?? 1})\n`)
  return 0
}
