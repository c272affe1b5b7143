import '../polyfill.js'
import { UsageError } from './args.js'

const USAGE = `promptmesh — distributed prompt caching for local LLMs

Usage:
  promptmesh start --model FILE [--data-dir DIR] [--api HOST:PORT] [--listen MULTIADDR] [--peer MULTIADDR] [--no-mdns]
  promptmesh query [--api URL] [--max-tokens N] [--json] PROMPT
  promptmesh status [--api URL] [--json]
  promptmesh doctor [--api URL] [--json]
  promptmesh swarm-key generate [--out FILE]
  promptmesh testnet [--nodes N] [--profile pi-zero-2w|lan|fast-cpu-slow-link] [--mmlu DIR] [--out DIR]
  promptmesh run --model FILE --cache-dir DIR [--max-tokens N] [--json] PROMPT
  promptmesh model synth --shape <tiny-llama|tiny-gemma3|gemma3-270m> --out FILE [--seed N]

Run 'promptmesh <command> --help' for a command's options.`

type Command = (argv: string[]) => Promise<number>

const commands: Record<string, () => Promise<Command>> = {
  start: async () => (await import('./start.js')).startCommand,
  query: async () => (await import('./query.js')).queryCommand,
  status: async () => (await import('./status.js')).statusCommand,
  doctor: async () => (await import('./doctor.js')).doctorCommand,
  testnet: async () => (await import('./testnet.js')).testnetCommand,
  'swarm-key': async () => (await import('./swarm-key.js')).swarmKeyCommand,
  run: async () => (await import('./run.js')).runCommand,
  model: async () => (await import('./model.js')).modelCommand
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name == null || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return name == null ? 2 : 0
  }
  const load = commands[name]
  if (load == null) throw new UsageError(`unknown command ${JSON.stringify(name)}\n\n${USAGE}`)
  return await (await load())(rest)
}

main(process.argv.slice(2)).then(code => {
  process.exitCode = code
}, (err: Error) => {
  if (err instanceof UsageError) {
    process.stderr.write(`promptmesh: ${err.message}\n`)
    process.exitCode = 2
  } else {
    process.stderr.write(`promptmesh: ${err.name === 'Error' ? '' : `${err.name}: `}${err.message}\n`)
    if (process.env.DEBUG != null) process.stderr.write(`${err.stack ?? ''}\n`)
    process.exitCode = 1
  }
})
