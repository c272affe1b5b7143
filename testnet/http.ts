/**
 * JSON over HTTP to a node, either on a TCP URL (loopback mode) or through a unix socket relayed into
 * the node's namespace (namespace mode). Every call is bounded by an AbortSignal.
 */
import { request } from 'node:http'
import { TestnetNodeError } from './errors.js'

export type Endpoint = { url: string } | { socketPath: string }

export interface HttpResult {
  status: number
  text: string
}

/** Largest response read (a completion with its token list is a few KB; /metrics a few tens). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024

export async function httpRequest (endpoint: Endpoint, method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal): Promise<HttpResult> {
  signal.throwIfAborted()
  const payload = body == null ? undefined : JSON.stringify(body)
  const target = 'url' in endpoint
    ? (() => { const u = new URL(path, endpoint.url); return { hostname: u.hostname, port: u.port, path: u.pathname + u.search } })()
    : { socketPath: endpoint.socketPath, path }
  return await new Promise<HttpResult>((resolve, reject) => {
    const req = request({
      ...target,
      method,
      signal,
      headers: payload == null ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
    }, res => {
      const parts: Buffer[] = []
      let size = 0
      res.on('data', (d: Buffer) => {
        size += d.length
        if (size > MAX_RESPONSE_BYTES) { req.destroy(new TestnetNodeError(`response to ${method} ${path} exceeds ${MAX_RESPONSE_BYTES} bytes`)); return }
        parts.push(d)
      })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

export async function httpJson<T = any> (endpoint: Endpoint, method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal): Promise<T> {
  const res = await httpRequest(endpoint, method, path, body, signal)
  let parsed: any
  try {
    parsed = JSON.parse(res.text)
  } catch {
    throw new TestnetNodeError(`${method} ${path}: HTTP ${res.status}, not JSON: ${res.text.slice(0, 200)}`)
  }
  if (res.status >= 400) throw new TestnetNodeError(`${method} ${path}: HTTP ${res.status}: ${parsed?.error?.message ?? res.text.slice(0, 200)}`)
  return parsed as T
}

/** A Prometheus sample's value (label-less or the first labelled one), NaN when absent. */
export function metricValue (text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
  return m == null ? NaN : Number(m[1])
}

/** Sum over every label set of a Prometheus sample. */
export function metricSum (text: string, name: string): number {
  let sum = 0
  let found = false
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) { sum += Number(m[1]); found = true }
  return found ? sum : NaN
}
