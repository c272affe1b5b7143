/**
 * A stand-in for the Pipeline that ApiServer drives, for API tests that need no model: answers at once
 * (or when released), records the options it got, and honours the abort signal like the real one
 * (which stops at the next generated token).
 */
import type { QueryOptions, QueryResult } from '../../src/pipeline/pipeline.js'

export interface StubCall { prompt: string | number[], options: QueryOptions, aborted?: unknown }

export class StubPipeline {
  readonly calls: StubCall[] = []
  /** when set, queries wait for it (or for their signal) */
  hold?: Promise<void>
  readonly engine = {
    chatTokens: (messages: Array<{ role: string, content: string }>): { tokens: number[], stop: string[] } => ({
      tokens: messages.flatMap((m) => [...m.content].map((c) => c.charCodeAt(0) % 1000)).concat(1),
      stop: []
    })
  }

  async run (prompt: string, options: QueryOptions = {}): Promise<QueryResult> { return await this.answer(prompt, options) }
  async runTokens (tokens: number[], options: QueryOptions = {}): Promise<QueryResult> { return await this.answer(tokens, options) }

  private async answer (prompt: string | number[], options: QueryOptions): Promise<QueryResult> {
    const call: StubCall = { prompt, options }
    this.calls.push(call)
    options.onText?.('Hello')
    if (this.hold != null) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { call.aborted = options.signal?.reason; reject(options.signal?.reason) }
        if (options.signal?.aborted === true) { onAbort(); return }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        void this.hold?.then(() => { options.signal?.removeEventListener('abort', onAbort); resolve() })
      })
    }
    options.onText?.(' world')
    return {
      text: 'Hello world',
      tokens: [1, 2],
      promptTokens: typeof prompt === 'string' ? prompt.length : prompt.length,
      ttftMs: 1,
      ttltMs: 2,
      finishReason: 'length',
      cache: { source: 'none', reusedTokens: 0, bytesFetched: 0, peers: [], localTokens: 0, remoteTokens: 0, storedChunks: 0, requests: 0, emptyRequests: 0, fetchSkipped: false },
      timings: { lookupMs: 0, fetchMs: 0, restoreMs: 0, prefillMs: 1 }
    }
  }
}
