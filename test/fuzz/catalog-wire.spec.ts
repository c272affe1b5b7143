import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { expect } from 'chai'
import fc from 'fast-check'
import { decodeChunkFile, encodeChunkFile } from '../../src/cache/chunk-store.js'
import { CatalogMessage, decodeCatalog, DEFAULT_MAX_FILTER_BYTES } from '../../src/catalog/index.js'
import { generateSwarmKey, parseSwarmKey } from '../../src/network/index.js'
import { fuzzBytes, outcome, params, RUNS, Tally } from './fuzz.js'

const FINGERPRINT = createHash('sha256').update('fuzz model').digest('hex')
const SIGNER = peerIdFromString('12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5')
const OTHER = peerIdFromString('12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8')

describe('fuzz: catalog, chunk files and swarm keys', function () {
  this.timeout(600_000)
  const tally = new Tally()
  after(() => { for (const line of tally.lines()) console.log(`      ${line}`) }) // eslint-disable-line no-console

  it(`decodeCatalog: ${RUNS} random and mutated catalogs give a consistent filter or InvalidCatalogError`, () => {
    const catalog = (bits: number, publisher = SIGNER): Uint8Array => CatalogMessage.encode({
      fingerprint: FINGERPRINT, seq: Date.now(), entries: 3, bits, hashes: 7, seed: 0x504d4331, filter: new Uint8Array(bits / 8).fill(0x5a),
      publisher: publisher.toMultihash().bytes as Uint8Array<ArrayBuffer>
    })
    const bases = [catalog(8), catalog(64), catalog(10_240), catalog(64, OTHER)]
    fc.assert(fc.property(fuzzBytes(bases, 1024), fc.constantFrom(64, 1280, DEFAULT_MAX_FILTER_BYTES), (bytes, maxFilterBytes) => {
      tally.add('decodeCatalog', outcome(() => {
        const c = decodeCatalog(bytes, FINGERPRINT, maxFilterBytes, SIGNER)
        expect(c.filter.byteLength).to.equal(c.shape.bits / 8)
        expect(c.filter.byteLength).to.be.at.most(maxFilterBytes)
        expect(c.shape.hashes).to.be.within(1, 32)
        expect(Number.isSafeInteger(c.seq) && c.seq >= 1).to.equal(true)
        expect(Buffer.from(c.publisher).equals(Buffer.from(SIGNER.toMultihash().bytes))).to.equal(true)
      }, ['InvalidCatalogError']))
    }), params)
  })

  it(`decodeChunkFile: ${RUNS} random and mutated chunk files give the exact payload or ChunkCorruptError`, () => {
    const payloads = [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(3_000, 7)]
    const files = payloads.map(encodeChunkFile)
    fc.assert(fc.property(fuzzBytes(files, 256), (bytes) => {
      tally.add('decodeChunkFile', outcome(() => {
        const payload = decodeChunkFile(bytes)
        // a file that decodes carries its own digest: only an intact payload can pass
        expect(payloads.some((p) => p.equals(payload))).to.equal(true)
      }, ['ChunkCorruptError']))
    }), params)
  })

  it(`parseSwarmKey: ${RUNS} random and mutated keys give a canonical key or SwarmKeyError`, () => {
    const keys = [generateSwarmKey(), generateSwarmKey()]
    fc.assert(fc.property(fc.oneof(fuzzBytes(keys, 128), fc.string({ maxLength: 200 }).map((s) => new TextEncoder().encode(s))), (bytes) => {
      tally.add('parseSwarmKey', outcome(() => {
        const key = new TextDecoder().decode(parseSwarmKey(bytes))
        expect(key).to.match(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
      }, ['SwarmKeyError']))
    }), params)
  })
})
