import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import type { ParseArgsConfig } from 'node:util'

/** A user mistake on the command line: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  static override name = 'UsageError'
  override name = 'UsageError'
}

type Options = NonNullable<ParseArgsConfig['options']>

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

export function parse (argv: string[], options: Options, usage: string): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
    return { values: values as Parsed['values'], positionals }
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${usage}`)
  }
}

/** `data-dir` → `PROMPTMESH_DATA_DIR` */
export function envName (flagName: string): string {
  return `PROMPTMESH_${flagName.toUpperCase().replace(/-/g, '_')}`
}

/**
 * Like parse, and every flag may also come from the environment (PROMPTMESH_<FLAG>, lists separated by
 * commas) or from a JSON config file (--config FILE or $PROMPTMESH_CONFIG; keys are flag names).
 * Precedence: command line, then environment, then config file.
 */
export async function parseWithConfig (argv: string[], options: Options, usage: string, env: NodeJS.ProcessEnv = process.env): Promise<Parsed> {
  const p = parse(argv, { ...options, config: { type: 'string' } }, usage)
  const configPath = str(p, 'config') ?? env.PROMPTMESH_CONFIG
  let config: Record<string, unknown> = {}
  if (configPath != null && configPath !== '') {
    let text: string
    try {
      text = await readFile(configPath, 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read config file ${configPath}: ${(err as Error).message}`)
    }
    try {
      config = JSON.parse(text)
    } catch (err) {
      throw new UsageError(`config file ${configPath} is not valid JSON: ${(err as Error).message}`)
    }
    if (config == null || typeof config !== 'object' || Array.isArray(config)) throw new UsageError(`config file ${configPath} must hold a JSON object of flag names`)
    const unknown = Object.keys(config).filter(k => !(k in options))
    if (unknown.length > 0) throw new UsageError(`config file ${configPath}: unknown setting(s) ${unknown.join(', ')}`)
  }
  for (const [name, spec] of Object.entries(options)) {
    if (p.values[name] !== undefined) continue
    const fromEnv = env[envName(name)]
    let value: unknown = fromEnv !== undefined ? fromEnv : config[name]
    if (value === undefined) continue
    if (spec.type === 'boolean') {
      if (typeof value === 'string') value = /^(1|true|yes|on)$/i.test(value)
      if (typeof value !== 'boolean') throw new UsageError(`${name} must be true or false`)
    } else if (spec.multiple === true) {
      if (typeof value === 'string') value = value.split(',').map(v => v.trim()).filter(v => v !== '')
      if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) throw new UsageError(`${name} must be a list of strings`)
    } else {
      if (typeof value === 'number') value = String(value)
      if (typeof value !== 'string') throw new UsageError(`${name} must be a string`)
    }
    p.values[name] = value as string | boolean | string[]
  }
  return p
}

export function str (p: Parsed, name: string): string | undefined {
  const v = p.values[name]
  return typeof v === 'string' ? v : undefined
}

export function required (p: Parsed, name: string, usage: string): string {
  const v = str(p, name)
  if (v == null || v === '') throw new UsageError(`--${name} is required\n\n${usage}`)
  return v
}

export function int (p: Parsed, name: string, min = 0): number | undefined {
  const v = str(p, name)
  if (v == null) return undefined
  const n = Number(v.replace(/_/g, ''))
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`)
  return n
}

export function num (p: Parsed, name: string): number | undefined {
  const v = str(p, name)
  if (v == null) return undefined
  const n = Number(v)
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(v)}`)
  return n
}

/** Byte sizes: 1048576, 512M, 2G, 1.5GiB. */
export function bytes (p: Parsed, name: string): number | undefined {
  const v = str(p, name)
  if (v == null) return undefined
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(v.trim())
  if (m == null) throw new UsageError(`--${name} must be a byte size such as 512M or 2G, got ${JSON.stringify(v)}`)
  const unit = { '': 0, k: 1, m: 2, g: 3, t: 4 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  return Math.floor(Number(m[1]) * 1024 ** unit)
}

export function flag (p: Parsed, name: string): boolean {
  return p.values[name] === true
}
