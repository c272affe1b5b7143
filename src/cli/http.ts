/** The CLI's side of a node's HTTP API: one request, its JSON body, and errors a user can act on. */

export interface ApiRequest {
  /** POSTs this as JSON; GET without */
  body?: unknown
  /** bearer token (--api-key / $PROMPTMESH_API_KEY) */
  key?: string
  /** none by default: a long prompt on a Pi may take minutes */
  timeoutMs?: number
}

export async function apiJson (url: string, request: ApiRequest = {}): Promise<any> {
  const headers: Record<string, string> = request.key != null ? { authorization: `Bearer ${request.key}` } : {}
  let response: Response
  try {
    response = await fetch(url, {
      ...(request.body !== undefined ? { method: 'POST', body: JSON.stringify(request.body) } : {}),
      headers: request.body !== undefined ? { ...headers, 'content-type': 'application/json' } : headers,
      ...(request.timeoutMs != null ? { signal: AbortSignal.timeout(request.timeoutMs) } : {})
    })
  } catch (err) {
    const origin = new URL(url).origin
    throw new Error(`cannot reach a node at ${origin}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message} (is 'promptmesh start' running? see --api)`)
  }
  const body = await response.json().catch(() => ({})) as { error?: { message?: string } }
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${body?.error?.message ?? response.statusText}`)
  return body
}
