/**
 * node relay.js SOCKET HOST PORT
 *
 * Runs inside a node's network namespace and forwards connections on a unix socket (a file, so it is
 * reachable from the testnet's own namespace) to the node's API at HOST:PORT. This is how the testnet
 * talks HTTP to nodes whose network it must not join. Exits on SIGTERM/SIGINT or when its parent goes.
 */
import { rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'

const [socketPath, host, port] = process.argv.slice(2)
if (socketPath == null || host == null || port == null) {
  process.stderr.write('usage: relay.js SOCKET HOST PORT\n')
  process.exit(2)
}
rmSync(socketPath, { force: true })
const server = createServer(client => {
  const upstream = connect(Number(port), host)
  client.pipe(upstream).pipe(client)
  const close = (): void => { client.destroy(); upstream.destroy() }
  client.on('error', close)
  upstream.on('error', close)
  client.on('close', close)
  upstream.on('close', close)
})
server.listen(socketPath, () => { process.stdout.write(`relay ${socketPath} -> ${host}:${port}\n`) })
const stop = (): void => {
  server.close()
  rmSync(socketPath, { force: true })
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
// stdin is a pipe from the testnet: when the testnet dies, so does the relay
process.stdin.on('end', stop)
process.stdin.on('error', stop)
process.stdin.resume()
