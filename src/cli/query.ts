import { flag, int, num, parse, str, UsageError } from './args.js'
import { DEFAULT_API_URL } from './defaults.js'
import { apiJson } from './http.js'

const USAGE = `promptmesh query [--api URL] [--max-tokens N] [--json] PROMPT

Sends PROMPT to a running node (any node of the mesh) and prints the answer.

Options:
  --api URL          the node's HTTP API (default ${DEFAULT_API_URL}, or $PROMPTMESH_API)
  --max-tokens N     tokens to generate (default 32)
  --temperature T    0 = greedy (default 0)
  --seed N           sampling seed
  --api-key KEY      when the node requires one (or $PROMPTMESH_API_KEY)
  --json             print the same JSON object as 'promptmesh run --json'`

export async function queryCommand (argv: string[]): Promise<number> {
  const p = parse(argv, {
    api: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    seed: { type: 'string' },
    'api-key': { type: 'string' },
    json: { type: 'boolean' }
  }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const prompt = p.positionals.join(' ')
  if (prompt === '') throw new UsageError(`a PROMPT is required\n\n${USAGE}`)
  const api = (str(p, 'api') ?? process.env.PROMPTMESH_API ?? DEFAULT_API_URL).replace(/\/+$/, '')
  const body = await apiJson(`${api}/v1/completions`, {
    key: str(p, 'api-key') ?? process.env.PROMPTMESH_API_KEY,
    body: { prompt, max_tokens: int(p, 'max-tokens', 0) ?? 32, temperature: num(p, 'temperature') ?? 0, seed: int(p, 'seed', 0) }
  }) as Record<string, any>
  const pm = body.promptmesh as Record<string, any>
  const { tokens, promptTokens, ttftMs, ttltMs, timings, ...cache } = pm
  const text = String(body.choices?.[0]?.text ?? '')
  if (flag(p, 'json')) {
    process.stdout.write(`${JSON.stringify({ text, tokens, promptTokens, ttftMs, ttltMs, finishReason: body.choices?.[0]?.finish_reason, cache, timings })}\n`)
  } else {
    process.stdout.write(`${text}\n`)
    process.stderr.write(`[${promptTokens} prompt tokens, cache ${cache.source}: ${cache.reusedTokens} reused | TTFT ${Number(ttftMs).toFixed(0)} ms, TTLT ${Number(ttltMs).toFixed(0)} ms]\n`)
  }
  return 0
}
