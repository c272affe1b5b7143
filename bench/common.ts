/** What the benchmark scripts share: workload options, prompt loading, statistics. */
import { parseArgs } from 'node:util'
import { synthesizedModel } from '../src/model/cached.js'
import { loadMmlu, syntheticPrompts } from '../src/workload/mmlu.js'
import type { ShapeName } from '../src/model/synth.js'
import type { MmluPrompt } from '../src/workload/mmlu.js'
import type { ParseArgsConfig } from 'node:util'

export interface Workload {
  values: Record<string, string | undefined>
  /** questions grouped by subject, the first of each group to fill caches */
  bySubject: Map<string, MmluPrompt[]>
  model: string
  label: string
}

/** --mmlu DIR --subjects N --questions N --shape S --model FILE --threads N, plus a script's own options. */
export async function workload (defaults: { subjects: string, questions: string }, extra: NonNullable<ParseArgsConfig['options']> = {}): Promise<Workload> {
  const { values } = parseArgs({
    options: {
      mmlu: { type: 'string' },
      subjects: { type: 'string', default: defaults.subjects },
      questions: { type: 'string', default: defaults.questions },
      shape: { type: 'string', default: 'gemma3-270m' },
      model: { type: 'string' },
      threads: { type: 'string', default: '2' },
      ...extra
    }
  })
  const v = values as Record<string, string | undefined>
  const subjects = Number(v.subjects)
  const questions = Number(v.questions) + 1
  const prompts = v.mmlu != null ? await loadMmlu(v.mmlu, { subjects, questionsPerSubject: questions }) : syntheticPrompts(subjects, questions)
  const bySubject = new Map<string, MmluPrompt[]>()
  for (const p of prompts) bySubject.set(p.subject, [...(bySubject.get(p.subject) ?? []), p])
  const model = v.model ?? await synthesizedModel(v.shape as ShapeName)
  const label = `${v.mmlu != null ? `MMLU 5-shot from ${v.mmlu}` : 'synthetic 5-shot prompts'}, model ${v.model ?? v.shape ?? ''}, ${v.threads ?? ''} threads`
  return { values: v, bySubject, model, label }
}

export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

/** This VM sometimes stalls a CPU for ~0.5 s: medians are the robust figure, means are shown too. */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : ((s[Math.floor((s.length - 1) / 2)] as number) + (s[Math.ceil((s.length - 1) / 2)] as number)) / 2
}

export const pad = (s: string | number, n: number): string => String(s).padStart(n)
