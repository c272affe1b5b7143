import { generateSwarmKey, writeSwarmKey } from '../network/swarm-key.js'
import { flag, parse, str, UsageError } from './args.js'

const USAGE = `promptmesh swarm-key generate [--out FILE]

Makes a new swarm key: the pre-shared key of a private mesh. Nodes started with
'promptmesh start --swarm-key FILE' talk only to nodes holding the same key; everyone else cannot even
connect. Copy the file to every node of the mesh (it is a secret: keep it mode 0600).

Without --out the key is printed on stdout. The format is the libp2p/IPFS 'swarm.key' one:
  /key/swarm/psk/1.0.0/
  /base16/
  <64 hex digits>

Options:
  --out FILE   write the key to FILE (mode 0600); an existing file is never overwritten`

export async function swarmKeyCommand (argv: string[]): Promise<number> {
  const p = parse(argv, { out: { type: 'string' } }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const [action, ...rest] = p.positionals
  if (action !== 'generate' || rest.length > 0) throw new UsageError(`expected 'generate'\n\n${USAGE}`)
  const out = str(p, 'out')
  if (out == null) {
    process.stdout.write(generateSwarmKey())
    return 0
  }
  if (out === '') throw new UsageError(`--out needs a file name\n\n${USAGE}`)
  await writeSwarmKey(out)
  process.stderr.write(`wrote a new swarm key to ${out}; copy it to every node and start them with --swarm-key ${out}\n`)
  return 0
}
