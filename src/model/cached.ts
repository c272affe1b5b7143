import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { synthesizeModel } from './synth.js'
import type { ShapeName } from './synth.js'

/**
 * Path of a synthetic model, written on first use. They are deterministic (shape + seed → same bytes),
 * so tests, benchmarks and the testnet share one copy per shape and seed.
 */
export async function synthesizedModel (shape: ShapeName, seed = 1, dir = join(tmpdir(), 'promptmesh-models')): Promise<string> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${shape}-seed${seed}.gguf`)
  if (!existsSync(path)) await synthesizeModel({ shape, out: path, seed })
  return path
}
