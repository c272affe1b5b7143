import { defaultLogger } from '@libp2p/logger'
import { openLocalNode } from '../node/local.js'
import { bytes, flag, int, num, parse, required, UsageError } from './args.js'
import { printResult } from './output.js'

const USAGE = `promptmesh run --model FILE --cache-dir DIR [options] PROMPT

Answers PROMPT on this machine, reusing (and filling) the KV-chunk cache in DIR.

Options:
  --model FILE            GGUF model (or hf:USER/REPO/FILE with internet)
  --cache-dir DIR         chunk store directory
  --max-tokens N          tokens to generate (default 32)
  --json                  print one JSON object: {text, tokens, promptTokens, ttftMs, ttltMs, cache}
  --temperature T         0 = greedy (default 0)
  --top-p P, --top-k K, --seed N   sampling options
  --block-tokens N        tokens per cached block (default 32)
  --cache-max-bytes SIZE  store budget, e.g. 2G (default 2G)
  --threads N             evaluation threads (default min(4, cores))
  --context-size N        context size (default min(4096, model's))
  --no-cache              compute from scratch, store nothing
  --flash-attention       faster on some CPUs, but cached answers may differ slightly from cold ones`

export async function runCommand (argv: string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    'cache-dir': { type: 'string' },
    'max-tokens': { type: 'string' },
    json: { type: 'boolean' },
    temperature: { type: 'string' },
    'top-p': { type: 'string' },
    'top-k': { type: 'string' },
    seed: { type: 'string' },
    'block-tokens': { type: 'string' },
    'cache-max-bytes': { type: 'string' },
    threads: { type: 'string' },
    'context-size': { type: 'string' },
    'no-cache': { type: 'boolean' },
    'flash-attention': { type: 'boolean' }
  }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const prompt = p.positionals.join(' ')
  if (prompt === '') throw new UsageError(`a PROMPT is required\n\n${USAGE}`)
  const node = await openLocalNode({
    model: required(p, 'model', USAGE),
    cacheDir: required(p, 'cache-dir', USAGE),
    cacheMaxBytes: bytes(p, 'cache-max-bytes'),
    blockTokens: int(p, 'block-tokens', 1),
    threads: int(p, 'threads', 1),
    contextSize: int(p, 'context-size', 16),
    flashAttention: flag(p, 'flash-attention'),
    progress: process.stderr.isTTY,
    logger: defaultLogger()
  })
  try {
    const json = flag(p, 'json')
    const res = await node.pipeline.run(prompt, {
      maxTokens: int(p, 'max-tokens', 0),
      temperature: num(p, 'temperature'),
      topP: num(p, 'top-p'),
      topK: int(p, 'top-k', 0),
      seed: int(p, 'seed', 0),
      noCache: flag(p, 'no-cache'),
      onText: json ? undefined : text => process.stdout.write(text)
    })
    printResult(res, json)
  } finally {
    await node.close()
  }
  return 0
}
