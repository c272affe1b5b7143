import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { rm, stat } from 'node:fs/promises'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { getLlama, LlamaLogLevel, resolveChatWrapper, resolveModelFile } from 'node-llama-cpp'
import { readWhole } from '../file-io.js'
import { DEFAULT_BATCH_SIZE, DEFAULT_CONTEXT_SIZE, DEFAULT_STATE_TMP_DIR, DEFAULT_THREADS } from './constants.js'
import { ModelLoadError, StateLoadError } from './errors.js'
import { layoutOf, parseState } from './state-codec.js'
import { createStateDir, StateFiles } from './state-files.js'
import type { ParsedState, StateLayout } from './state-codec.js'
import type { Logger } from '@libp2p/interface'
import type { ChatHistoryItem, Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp'

export interface EngineInit {
  /** a GGUF path, or (with internet) an `hf:` URI / URL resolved by node-llama-cpp's downloader */
  model: string
  /** where downloaded models go @default ~/.promptmesh/models */
  modelsDir?: string
  /** @default min(4, available cores) */
  threads?: number
  /** @default min(4096, the model's training context) */
  contextSize?: number
  /** @default 512 */
  batchSize?: number
  /**
   * Flash attention makes K/V depend on how prefill was batched, so cached answers would differ from cold
   * ones by ~1e-5 in probabilities. Off by default: promptmesh promises token-exact answers.
   * @default false
   */
  flashAttention?: boolean
  /** directory for state files, ideally tmpfs @default /dev/shm, else the OS temp dir */
  stateTmpDir?: string
  /**
   * tmpfs budget for assembled prefix states kept for reuse
   * @default min(512 MiB, RAM / 16)
   */
  hotStateMaxBytes?: number
  /** show a download progress bar for remote models */
  progress?: boolean
  log?: Logger
}

export interface GenerateOptions {
  maxTokens: number
  /** 0 = greedy @default 0 */
  temperature?: number
  topP?: number
  topK?: number
  seed?: number
  /** called with each generated token id, before the next one is computed */
  onToken?: (token: number, index: number) => void | Promise<void>
  signal?: AbortSignal
}

export interface ModelInfo {
  path: string
  architecture: string
  /** sliding attention window, when the model has one */
  swaWindow?: number
  trainContextSize: number
  fileSha256: string
}

/**
 * One model, one context, one sequence: the only place that talks to node-llama-cpp. It knows nothing of
 * chunks or the network; the pipeline drives it. Not re-entrant: callers serialize queries (see `lock`).
 */
export class Engine {
  readonly info: ModelInfo
  /** H(GGUF SHA-256 ‖ every setting that changes state bytes): the only guard against foreign states */
  readonly fingerprint: string
  /** the state layout this context produces, or undefined when the codec does not know it (caching off) */
  readonly layout?: StateLayout
  readonly contextSize: number
  readonly threads: number
  /** assembled prefix states on tmpfs, by the key of their last block */
  readonly states: StateFiles
  private readonly llama: Llama
  private readonly model: LlamaModel
  private readonly context: LlamaContext
  private sequence: LlamaContextSequence
  private readonly tmpDir: string
  private readonly log?: Logger
  private tail: Promise<void> = Promise.resolve()
  /** saved states are read into this (kept between saves: see saveState) */
  private saveBuffer = Buffer.alloc(0)

  private constructor (parts: {
    info: ModelInfo, fingerprint: string, layout?: StateLayout, llama: Llama, model: LlamaModel,
    context: LlamaContext, sequence: LlamaContextSequence, tmpDir: string, threads: number, hotStateMaxBytes: number, log?: Logger
  }) {
    this.info = parts.info
    this.fingerprint = parts.fingerprint
    this.layout = parts.layout
    this.llama = parts.llama
    this.model = parts.model
    this.context = parts.context
    this.sequence = parts.sequence
    this.tmpDir = parts.tmpDir
    this.states = new StateFiles(parts.tmpDir, parts.hotStateMaxBytes)
    this.threads = parts.threads
    this.contextSize = parts.context.contextSize
    this.log = parts.log
  }

  static async load (init: EngineInit): Promise<Engine> {
    const path = await resolveModelPath(init)
    const threads = init.threads ?? DEFAULT_THREADS
    const flashAttention = init.flashAttention ?? false
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, logger: (level, message) => init.log?.('llama.cpp %s: %s', level, message.trim()) })
    let model: LlamaModel
    try {
      model = await llama.loadModel({ modelPath: path })
    } catch (err) {
      throw new ModelLoadError(`cannot load model ${path}: ${(err as Error).message}`)
    }
    const contextSize = init.contextSize ?? Math.min(DEFAULT_CONTEXT_SIZE, model.trainContextSize)
    const context = await model.createContext({
      contextSize,
      batchSize: init.batchSize ?? DEFAULT_BATCH_SIZE,
      threads,
      flashAttention,
      // keep every SWA cell so that assembled states may hold all positions (exact for SWA and full attention)
      swaFullCache: true,
      // a state from a 1-sequence context does not load into a multi-sequence one, and vice versa
      sequences: 1
    })
    const meta = model.fileInfo.metadata as unknown as Record<string, any>
    releaseVocabulary(meta)
    const architecture = String(meta.general?.architecture ?? 'unknown')
    const window = Number(meta[architecture]?.attention?.sliding_window ?? 0)
    const fileSha256 = await sha256File(path)
    const info: ModelInfo = { path, architecture, swaWindow: window > 0 ? window : undefined, trainContextSize: model.trainContextSize, fileSha256 }
    const settings = {
      flashAttention,
      kvTypes: 'f16/f16',
      swaFullCache: true,
      sequences: 1,
      llamaCpp: llama.llamaCppRelease,
      stateVersion: 3
    }
    const fingerprint = createHash('sha256').update(Buffer.from(fileSha256, 'hex')).update(JSON.stringify(settings)).digest('hex')
    const tmpBase = init.stateTmpDir ?? (existsSync(DEFAULT_STATE_TMP_DIR) ? DEFAULT_STATE_TMP_DIR : tmpdir())
    const { dir: tmpDir, removedStale } = await createStateDir(tmpBase)
    if (removedStale > 0) init.log?.('removed %d state directories of promptmesh processes that are gone', removedStale)
    const hotStateMaxBytes = init.hotStateMaxBytes ?? Math.min(512 * 1024 ** 2, Math.floor(totalmem() / 16))
    const engine = new Engine({ info, fingerprint, llama, model, context, sequence: context.getSequence(), tmpDir, threads, hotStateMaxBytes, log: init.log })
    const layout = await engine.probeLayout()
    return layout == null ? engine : Object.assign(engine, { layout })
  }

  /** Saves a one-token state to learn (and check) the layout this context writes. */
  private async probeLayout (): Promise<StateLayout | undefined> {
    try {
      await this.reset()
      await this.evaluate(this.tokenize('a'))
      const state = await this.saveState()
      return layoutOf(state)
    } catch (err) {
      this.log?.error('KV-state layout not understood, prompt caching disabled: %s', (err as Error).message)
      return undefined
    } finally {
      await this.reset()
    }
  }

  /** Runs `fn` with exclusive use of the engine. */
  async lock<T> (fn: () => Promise<T>): Promise<T> {
    const prev = this.tail
    let release!: () => void
    this.tail = new Promise(resolve => { release = resolve })
    await prev
    try {
      return await fn()
    } finally {
      release()
    }
  }

  /** Prompt text to token ids, with BOS when the model wants one. */
  tokenize (text: string): number[] {
    const tokens = this.model.tokenize(text, false) as number[]
    const bos = this.model.tokens.bos as number | null
    return bos != null && this.model.tokens.shouldPrependBosToken ? [bos, ...tokens] : tokens
  }

  /**
   * Chat messages to prompt tokens through the model's chat template (node-llama-cpp's chat wrappers),
   * ending with the assistant's turn opened. Also returns the texts that end the assistant's turn.
   */
  chatTokens (messages: Array<{ role: 'system' | 'user' | 'assistant', content: string }>): { tokens: number[], stop: string[] } {
    const wrapper = resolveChatWrapper(this.model)
    const history: ChatHistoryItem[] = messages.map(m => m.role === 'assistant'
      ? { type: 'model', response: [m.content] }
      : { type: m.role, text: m.content })
    history.push({ type: 'model', response: [] })
    const { contextText, stopGenerationTriggers } = wrapper.generateContextState({ chatHistory: history })
    const stop = stopGenerationTriggers.map(t => t.toString()).filter(t => t.length > 0)
    return { tokens: contextText.tokenize(this.model.tokenizer) as number[], stop }
  }

  detokenize (tokens: readonly number[]): string { return this.model.detokenize(tokens as Token[]) }

  get modelHandle (): LlamaModel { return this.model }

  /** Tokens currently held by the sequence. */
  get contextTokenCount (): number { return this.sequence.contextTokens.length }

  /** Empties the sequence. */
  async reset (): Promise<void> {
    await this.sequence.clearHistory()
  }

  /** Evaluates tokens into the sequence without sampling. */
  async evaluate (tokens: number[]): Promise<void> {
    if (tokens.length > 0) await this.sequence.evaluateWithoutGeneratingNewTokens(tokens as Token[])
  }

  /**
   * The sequence's state as llama.cpp writes it, parsed and validated. Its bytes are valid until the
   * next saveState: a prompt saves megabytes of state several times (to cut chunks), and a fresh buffer
   * each time sets off full garbage collections that cost more than the saving on a Pi-class CPU.
   */
  async saveState (): Promise<ParsedState> {
    const file = join(this.tmpDir, `save-${randomBytes(6).toString('hex')}.ggsq`)
    try {
      await this.sequence.saveStateToFile(file)
      return parseState(await readWhole(file, (size) => {
        if (size > MAX_SAVE_BUFFER_BYTES) return Buffer.allocUnsafe(size)
        if (size > this.saveBuffer.length) this.saveBuffer = Buffer.allocUnsafeSlow(Math.min(MAX_SAVE_BUFFER_BYTES, Math.ceil(size * 1.25)))
        return this.saveBuffer
      }))
    } finally {
      await rm(file, { force: true })
    }
  }

  /**
   * Loads a state file the caller has already validated (parseState; see `states`). On failure the
   * sequence is replaced: a failed iSWA load leaves cells behind that node-llama-cpp does not know about.
   */
  async loadStateFile (file: string): Promise<void> {
    try {
      await this.sequence.loadStateFromFile(file, { acceptRisk: true })
    } catch (err) {
      this.sequence.dispose()
      this.sequence = this.context.getSequence()
      throw new StateLoadError(`llama.cpp refused the assembled state: ${(err as Error).message}`)
    }
  }

  /**
   * Evaluates `tokens` (at least one) and generates up to `maxTokens` tokens. Stops at end-of-generation.
   */
  async generate (tokens: number[], options: GenerateOptions): Promise<number[]> {
    const out: number[] = []
    if (options.maxTokens <= 0) {
      await this.evaluate(tokens)
      return out
    }
    const temperature = options.temperature ?? 0
    const iterator = this.sequence.evaluate(tokens as Token[], temperature > 0
      ? { temperature, topP: options.topP, topK: options.topK, seed: options.seed }
      : { temperature: 0 })
    try {
      for await (const token of iterator) {
        options.signal?.throwIfAborted()
        out.push(token)
        await options.onToken?.(token, out.length - 1)
        if (out.length >= options.maxTokens) break
      }
    } finally {
      await iterator.return()
    }
    return out
  }

  async close (): Promise<void> {
    await this.context.dispose()
    await this.model.dispose()
    await rm(this.tmpDir, { recursive: true, force: true })
  }
}

/**
 * Largest saved state read into the kept buffer (~1,900 tokens of the Gemma-3-270M shape); bigger ones
 * get their own memory, so that one long prompt does not pin a state's worth of RAM on a 512 MB board.
 */
const MAX_SAVE_BUFFER_BYTES = 32 * 1024 * 1024

/**
 * node-llama-cpp keeps the GGUF metadata as parsed, vocabulary included: for Gemma-3 262,144 token strings
 * with their scores and types, ~19 MB of JS heap that llama.cpp holds natively anyway. Every full
 * garbage collection walks it (~20 ms here, several times that under a Pi-class CPU quota, and it
 * happens mid-transfer), and a 512 MB board pays the RAM. Only the vocabulary's size is read from it
 * afterwards (node-llama-cpp: `iterateAllTokens`, vocabulary insights), so each array is replaced by an
 * empty one of the same length.
 */
export function releaseVocabulary (metadata: Record<string, any>): void {
  const ggml = metadata.tokenizer?.ggml as Record<string, unknown> | undefined
  if (ggml == null) return
  for (const key of ['tokens', 'scores', 'token_type', 'merges']) {
    const value = ggml[key]
    if (Array.isArray(value) && value.length > 0) ggml[key] = new Array(value.length)
  }
}

/**
 * Resolves a hf: URI or URL through node-llama-cpp's downloader (resumable, with a progress bar when
 * `progress`), reusing a file already in `dir`. Returns the local path.
 */
export async function downloadModel (uri: string, dir: string, progress: boolean): Promise<string> {
  try {
    return await resolveModelFile(uri, { directory: dir, cli: progress })
  } catch (err) {
    const e = err as Error & { cause?: Error }
    const why = e.cause?.message ?? e.message
    throw new ModelLoadError(`cannot download ${uri}: ${why}. Without internet, copy a GGUF file to this machine and pass its path with --model (or try 'promptmesh model synth' to test with a synthetic model)`)
  }
}

async function resolveModelPath (init: EngineInit): Promise<string> {
  const ref = init.model
  if (/^(hf:|https?:)/.test(ref)) return await downloadModel(ref, init.modelsDir ?? defaultModelsDir(), init.progress ?? false)
  try {
    const st = await stat(ref)
    if (!st.isFile()) throw new Error('not a file')
  } catch (err) {
    throw new ModelLoadError(`model file ${ref} cannot be read: ${(err as Error).message}`)
  }
  return ref
}

export function defaultModelsDir (): string {
  return join(process.env.HOME ?? tmpdir(), '.promptmesh', 'models')
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
