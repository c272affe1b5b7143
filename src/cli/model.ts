import { SHAPES, synthesizeModel } from '../model/synth.js'
import type { ShapeName } from '../model/synth.js'
import { defaultModelsDir, downloadModel } from '../engine/engine.js'
import { int, parse, required, str, UsageError } from './args.js'

const SYNTH_USAGE = `promptmesh model synth --shape <${Object.keys(SHAPES).join('|')}> --out FILE [--seed N]

Writes a deterministic synthetic GGUF model. Its weights are pseudo-random: it produces meaningless
text and exists to test and measure promptmesh where no real weights can be downloaded.`

const PULL_USAGE = `promptmesh model pull <hf:USER/REPO:QUANT | hf:USER/REPO/FILE.gguf | URL> [--dir DIR]

Downloads a GGUF model (with a progress bar) into DIR (default ${defaultModelsDir()}) and prints its
path, for 'promptmesh start --model PATH'. Needs internet; 'start' pulls its model by itself too.`

const USAGE = `promptmesh model <synth|pull> ...

  ${SYNTH_USAGE.split('\n')[0] ?? ''}
  ${PULL_USAGE.split('\n')[0] ?? ''}`

export async function modelCommand (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'synth') return await synth(rest)
  if (sub === 'pull') return await pull(rest)
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

async function pull (argv: string[]): Promise<number> {
  const p = parse(argv, { dir: { type: 'string' } }, PULL_USAGE)
  if (p.values.help === true) { process.stdout.write(`${PULL_USAGE}\n`); return 0 }
  const uri = p.positionals[0]
  if (uri == null || p.positionals.length !== 1) throw new UsageError(`one model URI is required\n\n${PULL_USAGE}`)
  if (!/^(hf:|https?:\/\/)/.test(uri)) throw new UsageError(`${JSON.stringify(uri)} is not a hf: URI or an http(s) URL\n\n${PULL_USAGE}`)
  const path = await downloadModel(uri, str(p, 'dir') ?? defaultModelsDir(), process.stderr.isTTY)
  process.stdout.write(`${path}\n`)
  return 0
}
