import { defaultLogger } from '@libp2p/logger'
import { startNode, STRATEGIES } from '../node/node.js'
import type { Strategy } from '../node/node.js'
import { bytes, flag, int, parse, str, UsageError } from './args.js'
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_DATA_DIR } from './defaults.js'
import type { Parsed } from './args.js'

const USAGE = `promptmesh start --model FILE [--data-dir DIR] [options]

Runs a mesh node: finds peers on the LAN by mDNS, shares its KV-chunk catalog, serves and fetches
chunks, and answers OpenAI-compatible HTTP requests.

Options:
  --model FILE            GGUF model (or hf:USER/REPO/FILE with internet)
  --data-dir DIR          identity and chunk store (default ${DEFAULT_DATA_DIR})
  --api HOST:PORT         HTTP API address (default ${DEFAULT_API_HOST}:${DEFAULT_API_PORT}; 0.0.0.0:8080 for the LAN)
  --api-key KEY           require 'Authorization: Bearer KEY' on the API
  --listen MULTIADDR      libp2p listen address, repeatable (default /ip4/0.0.0.0/tcp/0)
  --peer MULTIADDR        static peer (…/p2p/<peer id>), repeatable: a fallback where mDNS cannot work
  --no-mdns               do not discover peers by mDNS
  --strategy S            catalog (default), broadcast, local or none: what the testnet compares
  --no-adaptive-fetch     always fetch what peers hold, even when computing looks faster
  --cache-max-bytes SIZE  chunk store budget, e.g. 2G (default 2G)
  --block-tokens N        tokens per cached block (default 32; every node of a mesh must agree)
  --threads N             evaluation threads (default min(4, cores))
  --context-size N        context size (default min(4096, model's))`

/** host:port, :port or port. */
function apiAddress (p: Parsed): { host: string, port: number } {
  const v = str(p, 'api')
  if (v == null) return { host: DEFAULT_API_HOST, port: DEFAULT_API_PORT }
  const m = /^(?:(.*):)?(\d+)$/.exec(v)
  const port = Number(m?.[2])
  if (m == null || port > 65_535) throw new UsageError(`--api must be HOST:PORT, got ${JSON.stringify(v)}`)
  return { host: (m[1] ?? '') === '' ? DEFAULT_API_HOST : (m[1] as string).replace(/^\[|\]$/g, ''), port }
}

function list (p: Parsed, name: string): string[] | undefined {
  const v = p.values[name]
  return Array.isArray(v) ? v : undefined
}

export async function startCommand (argv: string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    'data-dir': { type: 'string' },
    api: { type: 'string' },
    'api-key': { type: 'string' },
    listen: { type: 'string', multiple: true },
    peer: { type: 'string', multiple: true },
    'no-mdns': { type: 'boolean' },
    'cache-max-bytes': { type: 'string' },
    'block-tokens': { type: 'string' },
    threads: { type: 'string' },
    'context-size': { type: 'string' },
    strategy: { type: 'string' },
    'no-adaptive-fetch': { type: 'boolean' }
  }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const model = str(p, 'model')
  if (model == null) throw new UsageError(`--model is required\n\n${USAGE}`)
  const strategy = str(p, 'strategy') ?? 'catalog'
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}`)
  const node = await startNode({
    strategy: strategy as Strategy,
    adaptiveFetch: !flag(p, 'no-adaptive-fetch'),
    model,
    dataDir: str(p, 'data-dir') ?? DEFAULT_DATA_DIR,
    api: apiAddress(p),
    apiKey: str(p, 'api-key') ?? process.env.PROMPTMESH_API_KEY,
    listen: list(p, 'listen'),
    peers: list(p, 'peer'),
    mdns: !flag(p, 'no-mdns'),
    cacheMaxBytes: bytes(p, 'cache-max-bytes'),
    blockTokens: int(p, 'block-tokens', 1),
    threads: int(p, 'threads', 1),
    contextSize: int(p, 'context-size', 16),
    progress: process.stderr.isTTY,
    logger: defaultLogger()
  })
  const s = node.status()
  process.stdout.write([
    `promptmesh node ${s.peerId}`,
    `model        ${node.local.engine.info.path} (fingerprint ${s.modelFingerprint.slice(0, 16)}…)`,
    ...s.addresses.map((a, i) => `${i === 0 ? 'listening   ' : '            '} ${a}`),
    `api          ${node.apiUrl ?? '(off)'}`,
    `mdns         ${flag(p, 'no-mdns') ? 'off' : 'on'}`,
    `strategy     ${strategy}`,
    `cache        ${s.cache.chunks} chunks, ${(s.cache.bytes / 1e6).toFixed(1)} MB`,
    ''
  ].join('\n'))

  await new Promise<void>(resolve => {
    const stop = (signal: string): void => {
      process.stdout.write(`${signal}: stopping\n`)
      resolve()
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
  await node.stop()
  return 0
}
