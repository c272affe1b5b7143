import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { ApiError } from './errors.js'
import type { Pipeline, QueryOptions, QueryResult } from '../pipeline/pipeline.js'
import type { Logger } from '@libp2p/interface'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Largest request body accepted. */
export const MAX_BODY_BYTES = 1024 * 1024
/** Queries waiting for the engine beyond this many get 429. */
export const DEFAULT_MAX_QUEUE = 16
/** Largest max_tokens a request may ask for. */
export const MAX_COMPLETION_TOKENS = 4096

export interface ApiInit {
  pipeline: Pipeline
  /** the `/status` document, assembled by the node */
  status: () => Record<string, unknown>
  /** Prometheus text for GET /metrics */
  metrics?: () => Promise<{ contentType: string, text: string }>
  /** model id shown in /v1/models and responses */
  modelId: string
  maxQueue?: number
  /** when set, requests must carry `Authorization: Bearer <apiKey>` */
  apiKey?: string
  log?: Logger
}

/** The promptmesh object every completion carries: where the prompt's KV state came from. */
export function cacheObject (res: QueryResult): Record<string, unknown> {
  return { ...res.cache, promptTokens: res.promptTokens, tokens: res.tokens, ttftMs: round(res.ttftMs), ttltMs: round(res.ttltMs), timings: res.timings }
}

function round (ms: number): number { return Math.round(ms * 100) / 100 }

/**
 * OpenAI-compatible HTTP API on node:http (no framework: it runs on Pi Zeros). Every route answers JSON;
 * errors use OpenAI's `{error: {message, type, param, code}}` shape.
 */
export class ApiServer {
  private readonly server: Server
  private readonly init: ApiInit
  private readonly maxQueue: number
  private pending = 0

  /** queries waiting for or running on the engine */
  get queued (): number { return this.pending }

  constructor (init: ApiInit) {
    this.init = init
    this.maxQueue = init.maxQueue ?? DEFAULT_MAX_QUEUE
    this.server = createServer((req, res) => {
      this.route(req, res).catch(err => this.fail(res, err))
    })
    this.server.requestTimeout = 0 // generation may take minutes on a Pi; clients time out themselves
  }

  async listen (host: string, port: number): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => { this.server.off('error', reject); resolve() })
    })
    return this.url
  }

  get url (): string {
    const a = this.server.address() as AddressInfo
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
    return `http://${host}:${a.port}`
  }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x')
    if (this.init.apiKey != null && req.headers.authorization !== `Bearer ${this.init.apiKey}`) {
      throw new ApiError(401, 'missing or wrong API key (Authorization: Bearer ...)', 'authentication_error', null, 'invalid_api_key')
    }
    const route = `${req.method ?? 'GET'} ${url.pathname.replace(/\/+$/, '')}`
    switch (route) {
      case 'GET /status': return this.json(res, 200, this.init.status())
      case 'GET /metrics': {
        if (this.init.metrics == null) throw new ApiError(404, 'metrics are off', 'invalid_request_error', null, 'not_found')
        const m = await this.init.metrics()
        res.writeHead(200, { 'content-type': m.contentType })
        res.end(m.text)
        return
      }
      case 'GET /v1/models': return this.json(res, 200, { object: 'list', data: [{ id: this.init.modelId, object: 'model', created: 0, owned_by: 'promptmesh' }] })
      case 'POST /v1/completions': return await this.completions(req, res)
      case 'POST /v1/chat/completions': return await this.chat(req, res)
      default: throw new ApiError(404, `no route ${route}`, 'invalid_request_error', null, 'not_found')
    }
  }

  private async completions (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req)
    let prompt = body.prompt
    if (Array.isArray(prompt) && prompt.length === 1) prompt = prompt[0]
    if (typeof prompt !== 'string' || prompt.length === 0) throw new ApiError(400, '`prompt` must be a non-empty string', 'invalid_request_error', 'prompt')
    const options = queryOptions(body)
    const id = `cmpl-${randomUUID()}`
    const created = Math.floor(Date.now() / 1000)
    const model = this.init.modelId
    if (body.stream === true) {
      return await this.stream(res, async onText => await this.run(prompt as string, { ...options, onText }), (text, finish) => ({
        id, object: 'text_completion', created, model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }]
      }))
    }
    const result = await this.run(prompt, options)
    this.json(res, 200, {
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason }],
      usage: usage(result),
      promptmesh: cacheObject(result)
    })
  }

  private async chat (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req)
    const messages = parseMessages(body.messages)
    const options = queryOptions(body)
    const { tokens, stop } = this.init.pipeline.engine.chatTokens(messages)
    options.stop = [...(options.stop ?? []), ...stop]
    const id = `chatcmpl-${randomUUID()}`
    const created = Math.floor(Date.now() / 1000)
    const model = this.init.modelId
    if (body.stream === true) {
      let first = true
      return await this.stream(res, async onText => await this.run(tokens, { ...options, onText }), (text, finish) => {
        const delta: Record<string, string> = first ? { role: 'assistant', content: text } : text === '' && finish != null ? {} : { content: text }
        first = false
        return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] }
      })
    }
    const result = await this.run(tokens, options)
    this.json(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: result.text }, logprobs: null, finish_reason: result.finishReason }],
      usage: usage(result),
      promptmesh: cacheObject(result)
    })
  }

  /** Runs a query through the bounded queue. */
  private async run (prompt: string | number[], options: QueryOptions): Promise<QueryResult> {
    if (this.pending >= this.maxQueue) throw new ApiError(429, `the node is busy (${this.pending} queries queued); retry later`, 'rate_limit_error', null, 'queue_full')
    this.pending++
    try {
      return typeof prompt === 'string' ? await this.init.pipeline.run(prompt, options) : await this.init.pipeline.runTokens(prompt, options)
    } finally {
      this.pending--
    }
  }

  /** Server-sent events as OpenAI streams them, ending with `data: [DONE]`. */
  private async stream (res: ServerResponse, run: (onText: (t: string) => void) => Promise<QueryResult>, chunk: (text: string, finish: string | null) => Record<string, unknown>): Promise<void> {
    let started = false
    const start = (): void => {
      if (started) return
      started = true
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    }
    const send = (obj: unknown): void => { start(); res.write(`data: ${JSON.stringify(obj)}\n\n`) }
    let result: QueryResult
    try {
      result = await run(text => send(chunk(text, null)))
    } catch (err) {
      if (!started) throw err
      send(toApiError(err).toJSON())
      res.end()
      return
    }
    send({ ...chunk('', result.finishReason), usage: usage(result), promptmesh: cacheObject(result) })
    res.end('data: [DONE]\n\n')
  }

  private json (res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }

  private fail (res: ServerResponse, err: unknown): void {
    const api = toApiError(err)
    if (api.status >= 500) this.init.log?.error('request failed: %e', err)
    if (res.headersSent) { res.destroy(); return }
    this.json(res, api.status, api.toJSON())
  }
}

export function toApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const e = err as Error
  if (e?.name === 'PromptTooLongError') return new ApiError(400, e.message, 'invalid_request_error', 'prompt', 'context_length_exceeded')
  if (e?.name === 'RangeError') return new ApiError(400, e.message)
  return new ApiError(500, `internal error: ${e?.message ?? String(err)}`, 'server_error')
}

function usage (r: QueryResult): Record<string, number> {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length }
}

function numberField (body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = body[name]
  if (v == null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new ApiError(400, `\`${name}\` must be a number in [${min}, ${max}]`, 'invalid_request_error', name)
  return v
}

/** OpenAI sampling fields → pipeline options. */
export function queryOptions (body: Record<string, unknown>): QueryOptions {
  const maxTokens = numberField(body, 'max_tokens', 0, MAX_COMPLETION_TOKENS) ?? numberField(body, 'max_completion_tokens', 0, MAX_COMPLETION_TOKENS)
  if (maxTokens != null && !Number.isInteger(maxTokens)) throw new ApiError(400, '`max_tokens` must be an integer', 'invalid_request_error', 'max_tokens')
  const seed = numberField(body, 'seed', 0, 2 ** 32 - 1)
  let stop = body.stop
  if (typeof stop === 'string') stop = [stop]
  if (stop != null && (!Array.isArray(stop) || stop.length > 4 || !stop.every(s => typeof s === 'string'))) {
    throw new ApiError(400, '`stop` must be a string or up to 4 strings', 'invalid_request_error', 'stop')
  }
  return {
    maxTokens: maxTokens ?? 16, // OpenAI's default for completions
    temperature: numberField(body, 'temperature', 0, 2),
    topP: numberField(body, 'top_p', 0, 1),
    seed: seed != null ? Math.floor(seed) : undefined,
    stop: stop as string[] | undefined
  }
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant'])

function parseMessages (value: unknown): Array<{ role: 'system' | 'user' | 'assistant', content: string }> {
  if (!Array.isArray(value) || value.length === 0) throw new ApiError(400, '`messages` must be a non-empty array', 'invalid_request_error', 'messages')
  return value.map((m: unknown, i) => {
    const msg = m as { role?: unknown, content?: unknown }
    if (msg == null || typeof msg !== 'object' || typeof msg.role !== 'string' || !ROLES.has(msg.role)) {
      throw new ApiError(400, `messages[${i}].role must be one of system, user, assistant`, 'invalid_request_error', `messages[${i}].role`)
    }
    // content may be a string or OpenAI's array of text parts
    const content = typeof msg.content === 'string'
      ? msg.content
      : Array.isArray(msg.content) && msg.content.every((p: { type?: unknown, text?: unknown }) => p?.type === 'text' && typeof p.text === 'string')
        ? msg.content.map((p: { text: string }) => p.text).join('')
        : null
    if (content == null) throw new ApiError(400, `messages[${i}].content must be a string or text parts`, 'invalid_request_error', `messages[${i}].content`)
    return { role: msg.role === 'developer' ? 'system' : msg.role as 'system' | 'user' | 'assistant', content }
  })
}

async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) throw new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', null, 'body_too_large')
  const parts: Buffer[] = []
  let size = 0
  for await (const part of req) {
    size += (part as Buffer).length
    if (size > MAX_BODY_BYTES) throw new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', null, 'body_too_large')
    parts.push(part as Buffer)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(parts).toString('utf8'))
  } catch {
    throw new ApiError(400, 'request body is not valid JSON')
  }
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'request body must be a JSON object')
  return body as Record<string, unknown>
}
