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
