/**
 * Synthetic SentencePiece ("llama" tokenizer model) vocabulary.
 *
 * llama.cpp's SPM tokenizer starts from single characters and repeatedly merges the
 * best-scoring adjacent pair whose concatenation is a vocab piece. A piece is therefore only
 * reachable if some merge path leads to it; adding every prefix of a piece guarantees one
 * (prefix + next symbol is always another prefix), so all pieces here come with their prefixes.
 */

/** llama.cpp token types (LLAMA_TOKEN_TYPE_*). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const

export const SPACE_MARKER = '\u2581' // '▁'

export interface Vocab {
  tokens: string[]
  scores: Float32Array
  types: Int32Array
  unk: number
  bos: number
  eos: number
  /** id of the first filler piece (= size when there is none); filler is never produced by tokenization */
  firstFiller: number
  /** ids of <start_of_turn> / <end_of_turn> when requested */
  startOfTurn?: number
  endOfTurn?: number
}

export interface VocabOptions {
  /** add Gemma's <start_of_turn> / <end_of_turn> control tokens */
  turnTokens?: boolean
}

export class VocabError extends Error {
  override name = 'VocabError'
}

/** Common English words, most frequent first, biased towards exam-question wording. */
export const COMMON_WORDS: readonly string[] = `
the of and to a in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there one all we their been has would what will if can when
who more no so said out up about into them than its some could only other time these two may
then do first any my now such like our over man me even most made after also did many before
must through years where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come since against go
came right used take three
answer question following true false correct incorrect statement statements best option options
choice choices describes description describe explain explains except least likely none above
below both example examples given value values result results number numbers function functions
process system systems cell cells energy law laws theory state states government history
century war country countries water body blood heart patient patients disease treatment drug
effect effects cause causes increase increases decrease decreases rate level levels high low
type types form forms part parts group groups change changes development social economic
political public market price prices cost costs company business court rights power force mass
speed light heat temperature pressure volume area length data information study studies research
theory method methods model models problem problems solution solutions equation equations
answered asked ask means mean meaning term terms refers refer called known found use using
following which what why how where whom whose when while within without during among across
between toward towards upon around always often usually sometimes never rather whether either
neither although though however therefore thus hence since until unless because about above
new old large small major minor main important different similar same other certain possible
likely common general specific primary secondary total average final initial simple complex
natural human animal animals plant plants species gene genes protein proteins acid acids
chemical reaction reactions element elements atom atoms molecule molecules electron electrons
charge current voltage field fields wave waves frequency motion velocity acceleration
population growth income tax trade money bank interest policy policies law legal contract
person persons child children woman women family society culture language word words sentence
text passage author reader writer story character characters poem
one two three four five six seven eight nine ten hundred thousand million percent half
first second third fourth last next previous following
be is are was were been being have has had do does did done make makes made take takes taken
give gives gave show shows shown find finds become becomes became include includes included
consider considered provide provides provided require requires required occur occurs occurred
produce produces produced represent represents contain contains
a an the this that these those it its they them their there here
`.trim().split(/\s+/)

/** Frequent letter sequences so unknown words still split into 2–3 character pieces. */
const FRAGMENTS: readonly string[] = `
th he in er an re on at en nd ti es or te ed is it al ar st to nt ng se ha as ou io le ve co me
de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ly ty ment tion sion ing ness able ible ous
ive ist ism ity ize ise ical ally ence ance ful less pre pro con com dis un im ex
the and ing ion tio ent ati for her ter hat tha ere ate his con res ver all ons nce men ith ted
ers pro thi wit are ess not ive was ect rea com eve per int est sta cti ica ist ear ain one our
iti rat
`.trim().split(/\s+/)

const capitalize = (w: string): string => w.charAt(0).toUpperCase() + w.slice(1)

/** Builds a deterministic vocabulary of exactly `size` pieces. */
export function buildVocab (size: number, options: VocabOptions = {}): Vocab {
  const tokens: string[] = []
  const types: number[] = []
  const seen = new Set<string>()
  const add = (piece: string, type: number): void => {
    if (seen.has(piece) || tokens.length >= size) return
    seen.add(piece)
    tokens.push(piece)
    types.push(type)
  }
  const addWithPrefixes = (piece: string): void => {
    const chars = Array.from(piece)
    for (let i = 1; i <= chars.length; i++) add(chars.slice(0, i).join(''), TokenType.NORMAL)
  }

  add('<unk>', TokenType.UNKNOWN)
  add('<s>', TokenType.CONTROL)
  add('</s>', TokenType.CONTROL)
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, TokenType.BYTE)
  const startOfTurn = options.turnTokens === true ? tokens.length : undefined
  if (options.turnTokens === true) {
    add('<start_of_turn>', TokenType.CONTROL)
    add('<end_of_turn>', TokenType.CONTROL)
  }
  const base = tokens.length + 1 + 2 * 94
  if (size < base) throw new VocabError(`vocab size ${size} is below the minimum of ${base}`)

  add(SPACE_MARKER, TokenType.NORMAL)
  for (let c = 0x21; c <= 0x7e; c++) add(String.fromCharCode(c), TokenType.NORMAL)
  for (let c = 0x21; c <= 0x7e; c++) add(SPACE_MARKER + String.fromCharCode(c), TokenType.NORMAL)

  // most useful first, so a small vocab keeps the frequent words whole
  for (const w of COMMON_WORDS) addWithPrefixes(SPACE_MARKER + w)
  for (const w of COMMON_WORDS.slice(0, 80)) addWithPrefixes(SPACE_MARKER + capitalize(w))
  for (const f of FRAGMENTS) addWithPrefixes(f)
  for (const w of COMMON_WORDS) addWithPrefixes(w)
  for (const w of COMMON_WORDS) addWithPrefixes(SPACE_MARKER + capitalize(w))
  for (const f of FRAGMENTS) addWithPrefixes(SPACE_MARKER + f)

  // filler: unreachable by merges ('▁zq' itself is not a piece), so it never shows up in tokenization
  const firstFiller = tokens.length
  for (let i = 0; tokens.length < size; i++) add(`${SPACE_MARKER}zq${i}`, TokenType.NORMAL)

  // SPM merges the highest score first; rank order mimics a frequency-sorted vocab
  const scores = new Float32Array(size)
  for (let i = 0; i < size; i++) scores[i] = types[i] === TokenType.NORMAL ? -i : 0

  return {
    tokens,
    scores,
    types: Int32Array.from(types),
    unk: 0,
    bos: 1,
    eos: 2,
    firstFiller,
    ...(startOfTurn !== undefined ? { startOfTurn, endOfTurn: startOfTurn + 1 } : {})
  }
}
