import { request } from 'node:http'
import { connect } from 'node:net'
import { expect } from 'chai'
import fc from 'fast-check'
import { ApiServer } from '../../src/api/server.js'
import { params, RUNS, Tally } from './fuzz.js'
import { StubPipeline } from './stub-pipeline.js'
import type { Pipeline } from '../../src/pipeline/pipeline.js'

async function post (url: string, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number, json: any, text: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString()
        let json: any
        try { json = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, json, text })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** JSON values of every type, and the edge numbers that break naive checks. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(NaN, Infinity, -1, 0, 0.5, 1, 2 ** 31, 2 ** 53, -0, 1e308, '', '0', 'true', true, false, null, [], {}, [1], ['a', 'b', 'c', 'd', 'e'], 'x'.repeat(300))
)

/** Mostly a valid value, sometimes anything. */
const field = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: anyValue })

/** A request body: well-formed fields, any of which may be replaced by a value of any type. */
const completionBody = fc.record({
  prompt: field(fc.string({ minLength: 1, maxLength: 50 })),
  max_tokens: field(fc.integer({ min: 0, max: 64 })),
  temperature: field(fc.double({ min: 0, max: 2, noNaN: true })),
  top_p: field(fc.double({ min: 0, max: 1, noNaN: true })),
  top_k: field(fc.integer({ min: 0, max: 100 })),
  seed: field(fc.integer({ min: 0, max: 2 ** 32 - 1 })),
  stop: field(fc.oneof(fc.string({ maxLength: 5 }), fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }))),
  stream: field(fc.boolean()),
  model: field(fc.string({ maxLength: 10 })),
  n: field(fc.constant(1)),
  user: field(fc.string({ maxLength: 10 }))
}, { requiredKeys: ['prompt'] })

const chatBody = fc.record({
  messages: field(fc.array(fc.record({
    role: field(fc.constantFrom('system', 'user', 'assistant', 'developer')),
    content: field(fc.oneof(fc.string({ maxLength: 20 }), fc.array(fc.record({ type: fc.constant('text'), text: fc.string({ maxLength: 10 }) }), { maxLength: 2 }))),
    name: field(fc.string({ maxLength: 5 }))
  }, { requiredKeys: ['role', 'content'] }), { minLength: 1, maxLength: 4 })),
  max_tokens: field(fc.integer({ min: 0, max: 64 })),
  stream: field(fc.boolean()),
  presence_penalty: field(fc.double({ min: -2, max: 2, noNaN: true }))
}, { requiredKeys: ['messages'] })

describe('fuzz: HTTP API (src/api/server.ts)', function () {
  this.timeout(600_000)
  const tally = new Tally()
  let api: ApiServer
  let url: string
  let pipeline: StubPipeline

  before(async () => {
    pipeline = new StubPipeline()
    api = new ApiServer({ pipeline: pipeline as unknown as Pipeline, status: () => ({ ok: true }), modelId: 'stub' })
    url = await api.listen('127.0.0.1', 0)
  })
  after(async () => {
    await api.close()
    for (const line of tally.lines()) console.log(`      ${line}`) // eslint-disable-line no-console
  })

  for (const [path, body] of [['/v1/completions', completionBody], ['/v1/chat/completions', chatBody]] as const) {
    it(`${path}: ${RUNS} bodies with fields of every type get 200 or an OpenAI-style 4xx, never a 5xx`, async () => {
      await fc.assert(fc.asyncProperty(fc.oneof({ weight: 9, arbitrary: body.map((b) => JSON.stringify(b)) }, { weight: 1, arbitrary: fc.string({ maxLength: 100 }) }), async (text) => {
        const res = await post(url, path, text)
        if (res.status === 200) {
          tally.add(path, '200')
          return
        }
        expect(res.status, res.text).to.be.within(400, 499)
        expect(res.json?.error?.message, res.text).to.be.a('string')
        expect(res.json?.error?.type, res.text).to.be.a('string')
        tally.add(path, `${res.status} ${res.json.error.param ?? res.json.error.code ?? ''}`.trim())
      }), params)
      // the node still answers a well-formed request
      expect((await post(url, path, JSON.stringify(path.includes('chat') ? { messages: [{ role: 'user', content: 'hi' }] } : { prompt: 'hi' }))).status).to.equal(200)
    })
  }

  it(`raw HTTP: ${Math.round(RUNS / 4)} garbage requests on raw sockets never take the server down`, async () => {
    const port = Number(new URL(url).port)
    const lines = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'BREW', ''), fc.constantFrom('/v1/completions', '/status', '/metrics', '/../../etc/passwd', '*', ''), fc.string({ maxLength: 40 }))
        .map(([m, p, junk]) => Buffer.from(`${m} ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${junk.length}\r\n${junk}\r\n\r\n${junk}`))
    )
    await fc.assert(fc.asyncProperty(lines, async (bytes) => {
      const answer = await new Promise<string>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => { socket.end(bytes) })
        const parts: Buffer[] = []
        socket.on('data', (d: Buffer) => parts.push(d))
        socket.on('close', () => resolve(Buffer.concat(parts).toString('latin1')))
        socket.on('error', () => {})
        socket.setTimeout(15_000, () => socket.destroy())
      })
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 'closed'
      expect(status.startsWith('5'), answer.slice(0, 200)).to.equal(false)
      tally.add('raw HTTP', status)
    }), { ...params, numRuns: Math.round(RUNS / 4) })
    expect((await post(url, '/v1/completions', JSON.stringify({ prompt: 'still alive' }))).status).to.equal(200)
  })
})
