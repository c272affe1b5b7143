/**
 * Shared pieces of the fuzz tests: a fixed seed and run count (reproducible runs; PROMPTMESH_FUZZ_RUNS
 * and PROMPTMESH_FUZZ_SEED override them), byte mutations, and a tally of outcomes per target that
 * is printed at the end (the figures of the README's "Hardening" section).
 */
import fc from 'fast-check'

export const RUNS = Number(process.env.PROMPTMESH_FUZZ_RUNS ?? 2_000)
export const SEED = Number(process.env.PROMPTMESH_FUZZ_SEED ?? 20_260_911)
export const params = { numRuns: RUNS, seed: SEED, endOnFailure: true }

/** Values that sit on the edges of length and count fields. */
const INTERESTING_U32 = [0, 1, 2, 7, 8, 31, 32, 33, 63, 64, 127, 128, 255, 256, 1023, 1024, 65_535, 65_536, 1 << 20, 1 << 24, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff]

export type Mutation =
  | { kind: 'flip', at: number, bit: number }
  | { kind: 'byte', at: number, value: number }
  | { kind: 'u32', at: number, value: number }
  | { kind: 'truncate', at: number }
  | { kind: 'insert', at: number, bytes: Uint8Array }
  | { kind: 'delete', at: number, n: number }
  | { kind: 'duplicate', at: number, n: number }

/** Half the mutations land in the first 256 bytes, where headers, counts and lengths live. */
const position = fc.oneof(fc.nat({ max: 255 }), fc.nat())

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: position, value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff) }),
  fc.record({ kind: fc.constant('u32' as const), at: position, value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat({ max: 0xffff_ffff })) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, n: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), at: position, n: fc.integer({ min: 1, max: 64 }) })
)

/** Applies mutations in order (positions are taken modulo the current length). */
export function mutate (input: Uint8Array, mutations: Mutation[]): Buffer {
  let b = Buffer.from(input)
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length
    switch (m.kind) {
      case 'flip': if (b.length > 0) b[at] = (b[at] as number) ^ (1 << m.bit); break
      case 'byte': if (b.length > 0) b[at] = m.value; break
      case 'u32': if (b.length >= 4) b.writeUInt32LE(m.value >>> 0, Math.min(at, b.length - 4)); break
      case 'truncate': b = b.subarray(0, at); break
      case 'insert': b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]); break
      case 'delete': b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]); break
      case 'duplicate': b = Buffer.concat([b.subarray(0, at + m.n), b.subarray(at)]); break
    }
  }
  return b
}

/** A mutated copy of one of `bases`, or random bytes. */
export function fuzzBytes (bases: Uint8Array[], maxRandom = 512): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: maxRandom }).map((b) => Buffer.from(b)) },
    { weight: 4, arbitrary: fc.tuple(fc.nat({ max: bases.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([i, ms]) => mutate(bases[i] as Uint8Array, ms)) }
  )
}

/** Outcomes per target: 'ok' or the name of the error thrown. */
export class Tally {
  readonly counts = new Map<string, Map<string, number>>()

  add (target: string, outcome: string, n = 1): void {
    const t = this.counts.get(target) ?? new Map<string, number>()
    t.set(outcome, (t.get(outcome) ?? 0) + n)
    this.counts.set(target, t)
  }

  total (target: string): number {
    return [...(this.counts.get(target)?.values() ?? [])].reduce((a, b) => a + b, 0)
  }

  /** One line per target, for the test log. */
  lines (): string[] {
    return [...this.counts.entries()].map(([target, outcomes]) => {
      const n = [...outcomes.values()].reduce((a, b) => a + b, 0)
      return `${target}: ${n} — ${[...outcomes.entries()].sort((a, b) => b[1] - a[1]).map(([o, c]) => `${o} ${c}`).join(', ')}`
    })
  }
}

/**
 * Runs `fn`; returns 'ok' or the thrown error's name after checking it is one of `allowed` (a named,
 * expected error, never a TypeError or RangeError from a bad index).
 */
export function outcome (fn: () => unknown, allowed: string[]): string {
  try {
    fn()
    return 'ok'
  } catch (err) {
    const name = (err as Error)?.name ?? typeof err
    if (!allowed.includes(name)) throw new Error(`untyped or unexpected error ${name}: ${(err as Error)?.message}`, { cause: err })
    return name
  }
}

export async function outcomeAsync (fn: () => Promise<unknown>, allowed: string[]): Promise<string> {
  try {
    await fn()
    return 'ok'
  } catch (err) {
    const name = (err as Error)?.name ?? typeof err
    if (!allowed.includes(name)) throw new Error(`untyped or unexpected error ${name}: ${(err as Error)?.message}`, { cause: err })
    return name
  }
}
