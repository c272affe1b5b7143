import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
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
/** A client must send its request line and headers within this time (slowloris). */
export const HEADERS_TIMEOUT_MS = 10_000
/** ...and its body within this time after the headers (a body trickled byte by byte). */
export const BODY_TIMEOUT_MS = 30_000
/** Open connections at most; beyond, new ones are closed at once. */
export const DEFAULT_MAX_CONNECTIONS = 128
/** An idle keep-alive connection is closed after this long. */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000
/** How often node:http checks the header deadline (its default, 30 s, would let a slow client hold on for 40 s). */
const CONNECTIONS_CHECK_INTERVAL_MS = 1_000

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
  /** @default 128 */
  maxConnections?: number
  /** @default HEADERS_TIMEOUT_MS (10 s) */
  headersTimeoutMs?: number
  /** @default BODY_TIMEOUT_MS (30 s) */
  bodyTimeoutMs?: number
  log?: Logger
}

/** The promptmesh object every completion carries: where the prompt's KV state came from. */
export function cacheObject (res: QueryResult): Record<string, unknown> {
  return { ...res.cache, promptTokens: res.promptTokens, tokens: res.tokens, ttftMs: round(res.ttftMs), ttltMs: round(res.ttltMs), timings: res.timings }
}

function round (ms: number): number { return Math.round(ms * 100) / 100 }

/** Compares in constant time (over digests, so lengths do not leak either). */
function sameSecret (given: string, expected: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

/**
 * OpenAI-compatible HTTP API on node:http (no framework: it runs on Pi Zeros). Every route answers JSON;
 * errors use OpenAI's `{error: {message, type, param, code}}` shape.
 *
 * No request can take the node down: headers and bodies have deadlines and a size limit, every field
 * is type-checked (400), a full queue answers 429, connections are capped, and a client that goes
 * away cancels its query (the pipeline stops generating at the next token).
 */
export class ApiServer {
  private readonly server: Server
  private readonly init: ApiInit
  private readonly maxQueue: number
  private readonly bodyTimeoutMs: number
  private pending = 0

  /** queries waiting for or running on the engine */
  get queued (): number { return this.pending }

  constructor (init: ApiInit) {
    this.init = init
    this.maxQueue = init.maxQueue ?? DEFAULT_MAX_QUEUE
    this.bodyTimeoutMs = init.bodyTimeoutMs ?? BODY_TIMEOUT_MS
    // generation may take minutes on a Pi: no deadline on the whole request (clients time out
    // themselves), but the headers must come quickly and the body within bodyTimeoutMs (readJson)
    this.server = createServer({
      requestTimeout: 0,
      headersTimeout: init.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(CONNECTIONS_CHECK_INTERVAL_MS, init.headersTimeoutMs ?? HEADERS_TIMEOUT_MS),
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS
    }, (req, res) => {
      this.route(req, res).catch(err => this.fail(res, err))
    })
    this.server.maxConnections = init.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    // a socket error (reset mid-request, malformed HTTP) concerns that client only
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      const body = JSON.stringify(new ApiError(status, `malformed or too slow HTTP request (${err.code ?? err.message})`).toJSON())
      socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    })
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
    if (this.init.apiKey != null && !sameSecret(req.headers.authorization ?? '', `Bearer ${this.init.apiKey}`)) {
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
    const body = await readJson(req, this.bodyTimeoutMs)
    let prompt = body.prompt
    if (Array.isArray(prompt) && prompt.length === 1) prompt = prompt[0]
    if (typeof prompt !== 'string' || prompt.length === 0) throw new ApiError(400, '`prompt` must be a non-empty string', 'invalid_request_error', 'prompt')
    const options = { ...queryOptions(body), signal: cancelOnClose(res) }
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
    const body = await readJson(req, this.bodyTimeoutMs)
    const messages = parseMessages(body.messages)
    const options = { ...queryOptions(body), signal: cancelOnClose(res) }
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
    // the client left before its turn came
    options.signal?.throwIfAborted()
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
    if (res.headersSent || res.destroyed) { res.destroy(); return }
    // the rest of an unread body (too large, too slow) is not worth reading: close after answering
    if (api.status === 408 || api.status === 413) res.shouldKeepAlive = false
    this.json(res, api.status, api.toJSON())
  }
}

/**
 * Aborted when the client goes away before the response is complete (connection closed or reset):
 * the pipeline then stops generating at the next token instead of working for nobody.
 */
function cancelOnClose (res: ServerResponse): AbortSignal {
  const controller = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new ApiError(499, 'the client closed the connection', 'invalid_request_error', null, 'client_closed'))
  })
  return controller.signal
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

function typeError (name: string, what: string): ApiError {
  return new ApiError(400, `\`${name}\` must be ${what}`, 'invalid_request_error', name)
}

/** Fields every request may carry that promptmesh does not use: checked for type, then ignored. */
function checkCommonFields (body: Record<string, unknown>): void {
  if (body.stream != null && typeof body.stream !== 'boolean') throw typeError('stream', 'a boolean')
  if (body.model != null && typeof body.model !== 'string') throw typeError('model', 'a string')
  if (body.user != null && typeof body.user !== 'string') throw typeError('user', 'a string')
  if (body.n != null && body.n !== 1) throw new ApiError(400, 'only `n` = 1 is supported', 'invalid_request_error', 'n')
  for (const name of ['presence_penalty', 'frequency_penalty']) {
    const v = body[name]
    if (v != null && (typeof v !== 'number' || !Number.isFinite(v) || v < -2 || v > 2)) throw typeError(name, 'a number in [-2, 2]')
  }
  if (body.stream_options != null && (typeof body.stream_options !== 'object' || Array.isArray(body.stream_options))) throw typeError('stream_options', 'an object')
}

/**
 * The request body, at most MAX_BODY_BYTES, within `timeoutMs`: a body trickled in byte by byte
 * must not hold a connection (and a queue slot) forever. On failure the rest of the body is not read
 * (the error response closes the connection).
 */
async function readBody (req: IncomingMessage, timeoutMs: number): Promise<Buffer[]> {
  return await new Promise<Buffer[]>((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    const done = (err?: ApiError): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      if (err == null) { resolve(parts); return }
      req.pause()
      reject(err)
    }
    const onData = (part: Buffer): void => {
      size += part.length
      if (size > MAX_BODY_BYTES) done(new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', null, 'body_too_large'))
      else parts.push(part)
    }
    const onEnd = (): void => { done() }
    const onError = (err: Error): void => { done(new ApiError(400, `the request body could not be read: ${err.message}`)) }
    const timer = setTimeout(() => { done(new ApiError(408, `request body not received within ${timeoutMs} ms`, 'invalid_request_error', null, 'timeout')) }, timeoutMs)
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
  })
}

/** OpenAI sampling fields → pipeline options. */
export function queryOptions (body: Record<string, unknown>): QueryOptions {
  checkCommonFields(body)
  const maxTokens = numberField(body, 'max_tokens', 0, MAX_COMPLETION_TOKENS) ?? numberField(body, 'max_completion_tokens', 0, MAX_COMPLETION_TOKENS)
  if (maxTokens != null && !Number.isInteger(maxTokens)) throw new ApiError(400, '`max_tokens` must be an integer', 'invalid_request_error', 'max_tokens')
  const seed = numberField(body, 'seed', 0, 2 ** 32 - 1)
  const topK = numberField(body, 'top_k', 0, 1_000_000)
  if (topK != null && !Number.isInteger(topK)) throw typeError('top_k', 'an integer')
  let stop = body.stop
  if (typeof stop === 'string') stop = [stop]
  if (stop != null && (!Array.isArray(stop) || stop.length > 4 || !stop.every(s => typeof s === 'string' && s.length <= MAX_STOP_CHARS))) {
    throw new ApiError(400, `\`stop\` must be a string or up to 4 strings of at most ${MAX_STOP_CHARS} characters`, 'invalid_request_error', 'stop')
  }
  return {
    maxTokens: maxTokens ?? 16, // OpenAI's default for completions
    temperature: numberField(body, 'temperature', 0, 2),
    topP: numberField(body, 'top_p', 0, 1),
    topK,
    seed: seed != null ? Math.floor(seed) : undefined,
    stop: stop as string[] | undefined
  }
}

/** Longest stop string (each is searched in the text after every token). */
const MAX_STOP_CHARS = 256

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
    if ((msg as { name?: unknown }).name != null && typeof (msg as { name?: unknown }).name !== 'string') throw typeError(`messages[${i}].name`, 'a string')
    return { role: msg.role === 'developer' ? 'system' : msg.role as 'system' | 'user' | 'assistant', content }
  })
}

async function readJson (req: IncomingMessage, timeoutMs: number): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) throw new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', null, 'body_too_large')
  const parts = await readBody(req, timeoutMs)
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(parts).toString('utf8'))
  } catch {
    throw new ApiError(400, 'request body is not valid JSON')
  }
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'request body must be a JSON object')
  return body as Record<string, unknown>
}
