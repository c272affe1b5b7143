import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { parse } from 'csv-parse/sync'

/** One MMLU question as a 5-shot prompt: the subject's header and dev examples are shared by all its questions. */
export interface MmluPrompt {
  subject: string
  prompt: string
  /** the shared 5-shot part (header + dev examples), a prefix of `prompt` */
  prefix: string
  answer: string
}

export class MmluFormatError extends Error {
  static override name = 'MmluFormatError'
  override name = 'MmluFormatError'
}

const CHOICES = ['A', 'B', 'C', 'D']

interface Row { question: string, choices: string[], answer: string }

async function readRows (file: string): Promise<Row[]> {
  const records = parse(await readFile(file, 'utf8'), { relax_column_count: false, skip_empty_lines: true }) as string[][]
  return records.map((r, i) => {
    if (r.length !== 6) throw new MmluFormatError(`${file}:${i + 1}: want 6 columns (question, A, B, C, D, answer), got ${r.length}`)
    return { question: r[0] as string, choices: r.slice(1, 5), answer: (r[5] as string).trim() }
  })
}

function formatQuestion (row: Row, withAnswer: boolean): string {
  const lines = [row.question, ...row.choices.map((c, i) => `${CHOICES[i] as string}. ${c}`), `Answer:${withAnswer ? ` ${row.answer}\n\n` : ''}`]
  return lines.join('\n')
}

/**
 * Reads a directory in the standard MMLU layout (`dev/<subject>_dev.csv`, `test/<subject>_test.csv`, no
 * header; question, A, B, C, D, answer) and builds the usual 5-shot prompts (Hendrycks et al.).
 */
export async function loadMmlu (dir: string, options: { subjects?: number, questionsPerSubject?: number, shots?: number } = {}): Promise<MmluPrompt[]> {
  const shots = options.shots ?? 5
  let subjects: string[]
  try {
    subjects = (await readdir(join(dir, 'test'))).filter(f => f.endsWith('_test.csv')).map(f => basename(f, '_test.csv')).sort()
  } catch (err) {
    throw new MmluFormatError(`${dir} is not an MMLU directory (no test/ folder): ${(err as Error).message}`)
  }
  if (subjects.length === 0) throw new MmluFormatError(`${dir}/test holds no <subject>_test.csv files`)
  const out: MmluPrompt[] = []
  for (const subject of subjects.slice(0, options.subjects ?? subjects.length)) {
    const dev = (await readRows(join(dir, 'dev', `${subject}_dev.csv`))).slice(0, shots)
    const test = (await readRows(join(dir, 'test', `${subject}_test.csv`))).slice(0, options.questionsPerSubject ?? Infinity)
    const prefix = `The following are multiple choice questions (with answers) about ${subject.replace(/_/g, ' ')}.\n\n` +
      dev.map(r => formatQuestion(r, true)).join('')
    for (const row of test) out.push({ subject, prefix, prompt: prefix + formatQuestion(row, false), answer: row.answer })
  }
  return out
}

/**
 * A stand-in for MMLU when no data set is at hand: per "subject", a shared few-shot prefix of about the
 * same length as an MMLU 5-shot prefix, then distinct questions. Deterministic.
 */
export function syntheticPrompts (subjects: number, questionsPerSubject: number): MmluPrompt[] {
  const words = ['energy', 'planet', 'market', 'cell', 'law', 'signal', 'theory', 'value', 'process', 'system', 'number', 'force', 'model', 'state', 'rate', 'change']
  const pick = (s: number, i: number): string => words[(s * 7 + i * 13 + ((s * i) % 5)) % words.length] as string
  const out: MmluPrompt[] = []
  for (let s = 0; s < subjects; s++) {
    const subject = `synthetic_subject_${s}`
    let prefix = `The following are multiple choice questions (with answers) about ${subject.replace(/_/g, ' ')}.\n\n`
    for (let e = 0; e < 5; e++) {
      const row: Row = {
        question: `Which of the following best describes the ${pick(s, e)} of a ${pick(s, e + 1)} when the ${pick(s, e + 2)} increases and the ${pick(s, e + 3)} stays the same over a long period of time?`,
        choices: [0, 1, 2, 3].map(c => `The ${pick(s, e + c + 4)} of the ${pick(s, e + c + 5)} becomes larger than the ${pick(s, e + c + 6)}`),
        answer: CHOICES[(s + e) % 4] as string
      }
      prefix += formatQuestion(row, true)
    }
    for (let q = 0; q < questionsPerSubject; q++) {
      const row: Row = {
        question: `Question ${q + 1}: what happens to the ${pick(s, q + 20)} of a ${pick(s, q + 21)} if the ${pick(s, q + 22)} is doubled?`,
        choices: [0, 1, 2, 3].map(c => `It ${['doubles', 'halves', 'stays the same', 'becomes zero'][c] as string} for the ${pick(s, q + c + 23)}`),
        answer: CHOICES[q % 4] as string
      }
      out.push({ subject, prefix, prompt: prefix + formatQuestion(row, false), answer: row.answer })
    }
  }
  return out
}
