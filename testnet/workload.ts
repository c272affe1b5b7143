/**
 * The query sequence every strategy replays: MMLU 5-shot prompts (subject after subject, so the first
 * question of a subject computes the shared 5-shot prefix and the next ones, on other nodes, can reuse
 * it), a JSON-lines prompt file, or synthetic 5-shot prompts. Nodes are assigned round-robin unless the
 * file says otherwise.
 *
 * With rounds > 1 the whole sequence is asked again, each round shifted by one node, so every repeat
 * comes from a node that has not asked that prompt before: the paper's comparison (a prompt another
 * device already processed, a full hit) next to the first asks (prefix hits at best).
 */
import { readFile } from 'node:fs/promises'
import { loadMmlu, syntheticPrompts } from '../src/workload/mmlu.js'
import { DEFAULT_MAX_PROMPT_CHARS, DEFAULT_QUESTIONS_PER_SUBJECT } from './constants.js'
import { WorkloadError } from './errors.js'
import type { MmluPrompt } from '../src/workload/mmlu.js'

export interface WorkloadQuery {
  /** position in the sequence (the same on every strategy) */
  index: number
  /** which node asks (0-based) */
  node: number
  prompt: string
  subject?: string
  /** 0 for the first ask of every prompt; r for its repeat in round r (on another node) */
  round: number
  /** index of the same prompt's first ask (itself in round 0) */
  firstAsk: number
}

export interface Workload {
  kind: 'mmlu' | 'prompts' | 'synthetic'
  /** directory or file, or a description */
  source: string
  queries: WorkloadQuery[]
  subjects: string[]
  /** subjects left out because a prompt exceeded maxPromptChars */
  skippedSubjects: string[]
  /** how many times the sequence is asked (1: every prompt once) */
  rounds: number
}

export interface WorkloadOptions {
  mmlu?: string
  prompts?: string
  /** total queries (prompt files: at most this many) */
  queries?: number
  subjects?: number
  nodes: number
  /** @default DEFAULT_MAX_PROMPT_CHARS */
  maxPromptChars?: number
  /** ask the whole sequence this many times, each round one node further on (queries counts one round) @default 1 */
  rounds?: number
}

/** Subject after subject, `perSubject` questions each, `queries` in all, nodes round-robin. */
function sequence (prompts: MmluPrompt[], subjects: string[], perSubject: number, queries: number, nodes: number): WorkloadQuery[] {
  const out: WorkloadQuery[] = []
  for (const subject of subjects) {
    for (const p of prompts.filter(q => q.subject === subject).slice(0, perSubject)) {
      if (out.length >= queries) return out
      out.push({ index: out.length, node: out.length % nodes, prompt: p.prompt, subject, round: 0, firstAsk: out.length })
    }
  }
  return out
}

export async function buildWorkload (options: WorkloadOptions): Promise<Workload> {
  const rounds = options.rounds ?? 1
  if (!Number.isInteger(rounds) || rounds < 1) throw new WorkloadError('--rounds must be a whole number of at least 1')
  if (rounds > options.nodes) throw new WorkloadError(`--rounds ${rounds} needs at least ${rounds} nodes: each repeat must come from a node that has not asked the prompt yet`)
  return repeated(await firstRound(options), rounds, options.nodes)
}

/** The sequence asked `rounds` times; round r asks query i on node (node_i + r) mod nodes. */
function repeated (workload: Workload, rounds: number, nodes: number): Workload {
  const first = workload.queries
  const queries: WorkloadQuery[] = []
  for (let r = 0; r < rounds; r++) {
    for (const q of first) queries.push({ ...q, index: queries.length, node: (q.node + r) % nodes, round: r, firstAsk: q.index })
  }
  return { ...workload, queries, rounds }
}

async function firstRound (options: WorkloadOptions): Promise<Workload> {
  const { nodes } = options
  const maxChars = options.maxPromptChars ?? DEFAULT_MAX_PROMPT_CHARS
  if (options.prompts != null) return await promptFile(options.prompts, nodes, options.queries)
  const queries = options.queries ?? 24
  if (queries < 1) throw new WorkloadError('--queries must be at least 1')
  const subjectCount = options.subjects ?? Math.max(1, Math.ceil(queries / DEFAULT_QUESTIONS_PER_SUBJECT))
  const perSubject = Math.ceil(queries / subjectCount)

  if (options.mmlu != null) {
    let all: MmluPrompt[]
    try {
      all = await loadMmlu(options.mmlu, { questionsPerSubject: perSubject })
    } catch (err) {
      throw new WorkloadError(`cannot read MMLU from ${options.mmlu}: ${(err as Error).message}`)
    }
    const subjects: string[] = []
    const skipped: string[] = []
    for (const subject of [...new Set(all.map(p => p.subject))]) {
      if (subjects.length >= subjectCount) break
      const qs = all.filter(p => p.subject === subject)
      if (qs.some(p => p.prompt.length > maxChars)) skipped.push(subject); else subjects.push(subject)
    }
    if (subjects.length === 0) throw new WorkloadError(`no MMLU subject in ${options.mmlu} has prompts under ${maxChars} characters`)
    // fewer usable subjects than asked: more questions from each
    const per = Math.ceil(queries / subjects.length)
    const loaded = per > perSubject ? await loadMmlu(options.mmlu, { questionsPerSubject: per }) : all
    return { kind: 'mmlu', source: options.mmlu, queries: sequence(loaded, subjects, per, queries, nodes), subjects, skippedSubjects: skipped, rounds: 1 }
  }

  const prompts = syntheticPrompts(subjectCount, perSubject)
  const subjects = [...new Set(prompts.map(p => p.subject))]
  return { kind: 'synthetic', source: `synthetic 5-shot prompts (${subjectCount} subjects × ${perSubject} questions)`, queries: sequence(prompts, subjects, perSubject, queries, nodes), subjects, skippedSubjects: [], rounds: 1 }
}

/** JSON lines `{"prompt": "...", "node": <optional index>}`, in order. */
async function promptFile (file: string, nodes: number, limit?: number): Promise<Workload> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new WorkloadError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const queries: WorkloadQuery[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim()
    if (line === '') continue
    let obj: unknown
    try {
      obj = JSON.parse(line)
    } catch (err) {
      throw new WorkloadError(`${file}:${i + 1}: not JSON: ${(err as Error).message}`)
    }
    const { prompt, node } = (obj ?? {}) as { prompt?: unknown, node?: unknown }
    if (typeof prompt !== 'string' || prompt === '') throw new WorkloadError(`${file}:${i + 1}: "prompt" must be a non-empty string`)
    if (node != null && (typeof node !== 'number' || !Number.isInteger(node) || node < 0 || node >= nodes)) {
      throw new WorkloadError(`${file}:${i + 1}: "node" must be an integer in [0, ${nodes - 1}] (there are ${nodes} nodes)`)
    }
    queries.push({ index: queries.length, node: typeof node === 'number' ? node : queries.length % nodes, prompt, round: 0, firstAsk: queries.length })
    if (limit != null && queries.length >= limit) break
  }
  if (queries.length === 0) throw new WorkloadError(`${file} holds no prompts`)
  return { kind: 'prompts', source: file, queries, subjects: [], skippedSubjects: [], rounds: 1 }
}
