import { openLocalNode } from '/work/main/dist/src/node/local.js'
import { loadMmlu } from '/work/main/dist/src/workload/mmlu.js'
import { assembleState, parseState, parseChunk } from '/work/main/dist/src/engine/state-codec.js'
import { blockKeys } from '/work/main/dist/src/cache/keys.js'
import { defaultLogger } from '@libp2p/logger'
import { rm, mkdtemp } from 'node:fs/promises'
const dir = await mkdtemp('/tmp/prof/n-')
const node = await openLocalNode({ model: '/tmp/promptmesh-models/gemma3-270m-seed1.gguf', cacheDir: dir, threads: 1, logger: defaultLogger() })
const [p] = await loadMmlu('/work/shared/data/mmlu', { questionsPerSubject: 1 })
const r1 = await node.pipeline.run(p.prompt, { maxTokens: 1 })
console.log('cold', r1.promptTokens ?? '', JSON.stringify(r1.timings ?? r1.promptmesh ?? {}).slice(0, 300))
const eng = node.engine
const tokens = eng.tokenize(p.prompt)
const keys = blockKeys(eng.fingerprint, tokens, 32)
const n = Math.floor((tokens.length - 1) / 32)
for (let rep = 0; rep < 3; rep++) {
  let t = performance.now(); const lap = (l) => { const d = performance.now() - t; t = performance.now(); return `${l} ${d.toFixed(1)}` }
  const out = []
  const payloads = []
  for (let i = 0; i < n; i++) payloads.push(await node.store.get(keys[i]))
  out.push(lap('store.get(sha)'))
  const chunks = payloads.map(b => parseChunk(b))
  out.push(lap('parseChunk'))
  const state = assembleState(chunks, eng.layout)
  out.push(lap('assemble'))
  parseState(state)
  out.push(lap('parseState'))
  const file = await eng.states.put(keys[n - 1] + 'x' + rep, state)
  out.push(lap('states.put'))
  await eng.reset()
  out.push(lap('reset'))
  await eng.loadStateFile(file)
  out.push(lap('loadStateFile'))
  console.log(n, 'blocks', (state.length / 1e6).toFixed(1), 'MB:', out.join(', '))
}
const r2 = await node.pipeline.run(p.prompt, { maxTokens: 1 })
console.log('repeat', JSON.stringify(r2).slice(0, 600))
await node.close()
await rm(dir, { recursive: true, force: true })
