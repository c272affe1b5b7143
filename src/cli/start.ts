import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { readSwarmKey, swarmKeyPermissionWarning } from '../network/swarm-key.js'
import { startNode, STRATEGIES } from '../node/node.js'
import type { Strategy } from '../node/node.js'
import { bytes, flag, int, parseWithConfig, str, UsageError } from './args.js'
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_DATA_DIR, DEFAULT_MODEL } from './defaults.js'
import type { Parsed } from './args.js'
import type { ParseArgsConfig } from 'node:util'

const USAGE = `promptmesh start --model FILE [--data-dir DIR] [options]

Runs a mesh node: finds peers on the LAN by mDNS, shares its KV-chunk catalog, serves and fetches
chunks, and answers OpenAI-compatible HTTP requests.

Every option may also be set as PROMPTMESH_<OPTION> (e.g. PROMPTMESH_DATA_DIR, lists comma-separated)
or in a JSON config file given with --config FILE or PROMPTMESH_CONFIG (keys are option names).

Options:
  --model FILE|URI        GGUF model path, or hf:USER/REPO:QUANT / a URL, downloaded once into
                          <data-dir>/models (default ${DEFAULT_MODEL}: Gemma-3 270M, as in the paper)
  --config FILE           JSON file of options
  --data-dir DIR          identity and chunk store (default ${DEFAULT_DATA_DIR})
  --api HOST:PORT         HTTP API address (default ${DEFAULT_API_HOST}:${DEFAULT_API_PORT}; 0.0.0.0:8080 for the LAN)
  --api-key KEY           require 'Authorization: Bearer KEY' on the API
  --listen MULTIADDR      libp2p listen address, repeatable (default /ip4/0.0.0.0/tcp/0)
  --peer MULTIADDR        static peer (…/p2p/<peer id>), repeatable: a fallback where mDNS cannot work
  --no-mdns               do not discover peers by mDNS
  --swarm-key FILE        private mesh: talk only to nodes holding this pre-shared key
                          (make one with 'promptmesh swarm-key generate --out FILE')
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

/** Options of `start`: also the keys of its config file and the PROMPTMESH_* variables. */
export const START_OPTIONS = {
  model: { type: 'string' },
  'data-dir': { type: 'string' },
  api: { type: 'string' },
  'api-key': { type: 'string' },
  listen: { type: 'string', multiple: true },
  peer: { type: 'string', multiple: true },
  'no-mdns': { type: 'boolean' },
  'swarm-key': { type: 'string' },
  'cache-max-bytes': { type: 'string' },
  'block-tokens': { type: 'string' },
  threads: { type: 'string' },
  'context-size': { type: 'string' },
  strategy: { type: 'string' },
  'no-adaptive-fetch': { type: 'boolean' }
} as const satisfies NonNullable<ParseArgsConfig['options']>

export async function startCommand (argv: string[]): Promise<number> {
  const p = await parseWithConfig(argv, START_OPTIONS, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const model = str(p, 'model') ?? DEFAULT_MODEL
  const dataDir = str(p, 'data-dir') ?? DEFAULT_DATA_DIR
  const strategy = str(p, 'strategy') ?? 'catalog'
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}`)
  const swarmKeyFile = str(p, 'swarm-key')
  const swarmKey = swarmKeyFile != null ? await readSwarmKey(swarmKeyFile) : undefined
  const keyWarning = swarmKeyFile != null ? await swarmKeyPermissionWarning(swarmKeyFile) : undefined
  if (keyWarning != null) process.stderr.write(`promptmesh: warning: ${keyWarning}\n`)
  const node = await startNode({
    strategy: strategy as Strategy,
    adaptiveFetch: !flag(p, 'no-adaptive-fetch'),
    model,
    dataDir,
    modelsDir: join(dataDir, 'models'),
    api: apiAddress(p),
    apiKey: str(p, 'api-key') ?? process.env.PROMPTMESH_API_KEY,
    listen: list(p, 'listen'),
    peers: list(p, 'peer'),
    mdns: !flag(p, 'no-mdns'),
    swarmKey,
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
    `mesh         ${swarmKey != null ? 'private (swarm key)' : 'open (any node on the network may join; see --swarm-key)'}`,
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
