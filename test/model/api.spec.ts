import '../../src/polyfill.js'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { defaultLogger } from '@libp2p/logger'
import { expect } from 'chai'
import OpenAI from 'openai'
import { startNode } from '../../src/node/node.js'
import { BIN } from '../fixtures/cli-nodes.js'
import { LONG_PROMPT, testModel } from '../fixtures/models.js'
import type { PromptmeshNode } from '../../src/node/node.js'

const exec = promisify(execFile)

/** Parses Prometheus text exposition into name{labels} → value; throws on a malformed line. */
function parsePrometheus (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?(?:[0-9.]+(?:e[+-]?\d+)?|\+Inf|-Inf|NaN))$/.exec(line)
    if (m == null) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`)
    out.set(`${m[1] as string}${m[2] ?? ''}`, Number(m[3]))
  }
  return out
}

describe('OpenAI-compatible API (in-process node, no mDNS)', function () {
  this.timeout(600_000)
  let dir: string
  let node: PromptmeshNode
  let client: OpenAI
  const prompt = `${LONG_PROMPT}Which planet has rings?`

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pm-api-'))
    node = await startNode({ model: await testModel('tiny-gemma3'), dataDir: dir, threads: 1, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, api: { host: '127.0.0.1', port: 0 }, logger: defaultLogger() })
    client = new OpenAI({ baseURL: `${node.apiUrl as string}/v1`, apiKey: 'unused', maxRetries: 0 })
  })
  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('completions through the official client return the tokens `promptmesh query` prints', async () => {
    const res = await client.completions.create({ model: 'any', prompt, max_tokens: 12, temperature: 0 })
    const pm = (res as unknown as { promptmesh: { tokens: number[], source: string, reusedTokens: number, ttftMs: number } }).promptmesh
    expect(res.object).to.equal('text_completion')
    expect(res.usage?.completion_tokens).to.equal(12)
    expect(pm.tokens).to.have.length(12)
    const { stdout } = await exec(process.execPath, [BIN, 'query', '--api', node.apiUrl as string, '--max-tokens', '12', '--json', prompt])
    const cli = JSON.parse(stdout)
    expect(cli.tokens).to.deep.equal(pm.tokens)
    expect(cli.text).to.equal(res.choices[0]?.text)
    expect(cli.cache.source).to.equal('local') // the client's call cached the prompt
    expect(pm.ttftMs).to.be.a('number')
  })

  it('streams completions as server-sent events that add up to the same text', async () => {
    const whole = await client.completions.create({ model: 'any', prompt, max_tokens: 10 })
    const stream = await client.completions.create({ model: 'any', prompt, max_tokens: 10, stream: true })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(text).to.equal(whole.choices[0]?.text)
    expect(finish).to.equal('length')
  })

  it('chat completions use the chat template, stream the same answer, and carry the cache object', async () => {
    const messages = [{ role: 'system' as const, content: 'You answer astronomy questions.' }, { role: 'user' as const, content: 'Which planet is the largest?' }]
    const res = await client.chat.completions.create({ model: 'any', messages, max_tokens: 8, temperature: 0 })
    expect(res.choices[0]?.message.role).to.equal('assistant')
    expect((res as unknown as { promptmesh: { source: string } }).promptmesh.source).to.be.oneOf(['none', 'local'])
    let streamed = ''
    for await (const chunk of await client.chat.completions.create({ model: 'any', messages, max_tokens: 8, temperature: 0, stream: true })) {
      streamed += chunk.choices[0]?.delta.content ?? ''
    }
    expect(streamed).to.equal(res.choices[0]?.message.content)
    const again = await client.chat.completions.create({ model: 'any', messages, max_tokens: 8, temperature: 0 })
    expect(again.choices[0]?.message.content).to.equal(res.choices[0]?.message.content)
  })

  it('applies stop strings and seeds', async () => {
    const base = await client.completions.create({ model: 'any', prompt, max_tokens: 12 })
    const text = base.choices[0]?.text as string
    const stop = text.slice(4, 7)
    const stopped = await client.completions.create({ model: 'any', prompt, max_tokens: 12, stop })
    expect(stopped.choices[0]?.text).to.equal(text.slice(0, text.indexOf(stop)))
    expect(stopped.choices[0]?.finish_reason).to.equal('stop')
    // streaming never leaks the start of the stop string before it is known to be one
    let streamed = ''
    for await (const chunk of await client.completions.create({ model: 'any', prompt, max_tokens: 12, stop, stream: true })) streamed += chunk.choices[0]?.text ?? ''
    expect(streamed).to.equal(stopped.choices[0]?.text)
    const s1 = await client.completions.create({ model: 'any', prompt, max_tokens: 12, temperature: 1, seed: 7 })
    const s2 = await client.completions.create({ model: 'any', prompt, max_tokens: 12, temperature: 1, seed: 7 })
    expect(s1.choices[0]?.text).to.equal(s2.choices[0]?.text)
  })

  it('lists the model and answers errors in OpenAI\'s shape', async () => {
    const models = await client.models.list()
    expect(models.data).to.have.length(1)
    const bad = await client.completions.create({ model: 'any', prompt: '', max_tokens: 4 }).catch((e: unknown) => e)
    expect(bad).to.be.instanceOf(OpenAI.BadRequestError)
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).status).to.equal(400)
    const raw = await fetch(`${node.apiUrl as string}/v1/completions`, { method: 'POST', body: '{not json' })
    expect(raw.status).to.equal(400)
    expect((await raw.json() as { error: { type: string } }).error.type).to.equal('invalid_request_error')
    const long = await fetch(`${node.apiUrl as string}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x '.repeat(5000), max_tokens: 4 }) })
    expect(long.status).to.equal(400)
    expect((await long.json() as { error: { code: string } }).error.code).to.equal('context_length_exceeded')
    expect((await fetch(`${node.apiUrl as string}/v1/nothing`)).status).to.equal(404)
  })

  it('exposes Prometheus metrics whose counters move with queries', async () => {
    const before = parsePrometheus(await (await fetch(`${node.apiUrl as string}/metrics`)).text())
    await client.completions.create({ model: 'any', prompt, max_tokens: 3 })
    const after = parsePrometheus(await (await fetch(`${node.apiUrl as string}/metrics`)).text())
    expect((after.get('promptmesh_queries_total{source="local"}') as number) - (before.get('promptmesh_queries_total{source="local"}') as number)).to.equal(1)
    expect((after.get('promptmesh_generation_tokens_total') as number) - (before.get('promptmesh_generation_tokens_total') as number)).to.equal(3)
    expect(after.get('promptmesh_prompt_tokens_reused_total{source="local"}')).to.be.greaterThan(before.get('promptmesh_prompt_tokens_reused_total{source="local"}') as number)
    expect(after.get('promptmesh_time_to_first_token_seconds_count')).to.equal((before.get('promptmesh_time_to_first_token_seconds_count') as number) + 1)
    expect(after.get('promptmesh_store_chunks')).to.equal(node.local.store.count)
  })
})
