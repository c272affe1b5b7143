import { checkFirewall, checkInterfaces, checkMulticastRoute, checkPeers, readFirewallRules, readRouteTable } from '../diagnostics/checks.js'
import { flag, parse, str } from './args.js'
import { DEFAULT_API_URL } from './defaults.js'
import { apiJson } from './http.js'
import type { Check } from '../diagnostics/checks.js'

const USAGE = `promptmesh doctor [--api URL] [--json]

Checks what breaks zero-config meshes in practice: no multicast route, several interfaces, a firewall
on the mDNS port, peers seen but not connected, peers running another model. Sends no packet itself.`

const MARK: Record<Check['verdict'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' }

export async function doctorCommand (argv: string[]): Promise<number> {
  const p = parse(argv, { api: { type: 'string' }, 'api-key': { type: 'string' }, json: { type: 'boolean' } }, USAGE)
  if (flag(p, 'help')) { process.stdout.write(`${USAGE}\n`); return 0 }
  const api = (str(p, 'api') ?? process.env.PROMPTMESH_API ?? DEFAULT_API_URL).replace(/\/+$/, '')
  const status = await apiJson(`${api}/status`, { key: str(p, 'api-key') ?? process.env.PROMPTMESH_API_KEY, timeoutMs: 10_000 }).catch(() => undefined) as Parameters<typeof checkPeers>[0]
  const checks: Check[] = [
    checkMulticastRoute(await readRouteTable()),
    checkInterfaces(),
    checkFirewall(await readFirewallRules()),
    ...checkPeers(status)
  ]
  if (flag(p, 'json')) {
    process.stdout.write(`${JSON.stringify({ ok: checks.every(c => c.verdict !== 'fail'), checks })}\n`)
  } else {
    for (const c of checks) {
      process.stdout.write(`[${MARK[c.verdict]}] ${c.name}: ${c.detail}\n`)
      if (c.fix != null && c.verdict !== 'ok') process.stdout.write(`       → ${c.fix}\n`)
    }
  }
  return checks.some(c => c.verdict === 'fail') ? 1 : 0
}
