import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { checkFirewall, checkInterfaces, checkMulticastRoute, checkPeers } from '../../src/diagnostics/checks.js'
import { createNetns, netnsUnavailable } from '../fixtures/netns.js'

const BIN = fileURLToPath(new URL('../../../bin/promptmesh.js', import.meta.url))
const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n'

describe('doctor', () => {
  describe('checks', () => {
    it('finds the mDNS group through a default route or a multicast route, and fails without one', () => {
      expect(checkMulticastRoute(`${HEADER}wlan0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n`).verdict).to.equal('ok')
      expect(checkMulticastRoute(`${HEADER}eth0\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n`).detail).to.match(/eth0/)
      const none = checkMulticastRoute(`${HEADER}eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n`)
      expect(none.verdict).to.equal('fail')
      expect(none.fix).to.match(/ip route add 224\.0\.0\.0\/4/)
    })

    it('warns about several LAN interfaces', () => {
      const a = (address: string) => ({ address, family: 'IPv4' as const, internal: false, netmask: '255.255.255.0', mac: '', cidr: null })
      expect(checkInterfaces({ eth0: [a('192.168.1.5')], wlan0: [a('192.168.2.7')] }).verdict).to.equal('warn')
      expect(checkInterfaces({ wlan0: [a('192.168.2.7')] }).verdict).to.equal('ok')
    })

    it('spots a firewall that drops mDNS', () => {
      expect(checkFirewall('-A INPUT -p udp -m udp --dport 5353 -j DROP').verdict).to.equal('fail')
      expect(checkFirewall(':INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT').verdict).to.equal('fail')
      expect(checkFirewall(':INPUT DROP [0:0]\n-A INPUT -p udp --dport 5353 -j ACCEPT').verdict).to.equal('ok')
      expect(checkFirewall(undefined).verdict).to.equal('skip')
    })

    it('names peers seen but not connected, and peers on another model', () => {
      const checks = checkPeers({ peers: [
        { peerId: 'peer-gone-aaaaaaaa', connected: false, catalog: { entries: 3, ageMs: 40_000 } },
        { peerId: 'peer-othermodel-bb', connected: true, catalog: null }
      ] })
      expect(checks.map(c => c.name)).to.deep.equal(['peers seen but not connected', 'model fingerprint'])
      expect(checks[1]?.fix).to.match(/same GGUF file/)
    })
  })

  describe('in a network namespace (root)', function () {
    this.timeout(60_000)
    before(async function () {
      const reason = await netnsUnavailable()
      if (reason != null) { console.log(`      skipping: ${reason}`); this.skip() } // eslint-disable-line no-console
    })

    for (const multicast of [false, true]) {
      it(`reports ${multicast ? 'a working' : 'a missing'} multicast route`, async () => {
        const ns = await createNetns({ prefix: 'pm-doc', multicast })
        try {
          const out = await new Promise<{ code: number, stdout: string }>(resolve => {
            execFile('ip', ['netns', 'exec', ns.name, process.execPath, BIN, 'doctor', '--json', '--api', 'http://127.0.0.1:1'], (err, stdout) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, stdout }))
          })
          const report = JSON.parse(out.stdout)
          const route = report.checks.find((c: { name: string }) => c.name === 'multicast route')
          expect(route.verdict).to.equal(multicast ? 'ok' : 'fail')
          expect(out.code).to.equal(report.ok === true ? 0 : 1)
          if (!multicast) expect(out.code).to.equal(1)
        } finally {
          await ns.delete()
        }
      })
    }
  })
})
