import { ChunkStore } from '../cache/chunk-store.js'
import { Engine } from '../engine/engine.js'
import { Pipeline } from '../pipeline/pipeline.js'
import type { EngineInit } from '../engine/engine.js'
import type { ComponentLogger } from '@libp2p/interface'

export interface LocalNodeInit extends Omit<EngineInit, 'log'> {
  cacheDir: string
  cacheMaxBytes?: number
  blockTokens?: number
  /** false: the `none` strategy, no chunk is read or written @default true */
  cache?: boolean
  /** fetch from peers only when it is expected to beat computing @default true */
  adaptiveFetch?: boolean
  logger: ComponentLogger
}

export interface LocalNode {
  engine: Engine
  store: ChunkStore
  pipeline: Pipeline
  close: () => Promise<void>
}

/** Engine + chunk store + pipeline: everything a node needs to answer prompts on its own. */
export async function openLocalNode (init: LocalNodeInit): Promise<LocalNode> {
  const store = await ChunkStore.open({ dir: init.cacheDir, maxBytes: init.cacheMaxBytes, log: init.logger.forComponent('promptmesh:store') })
  const engine = await Engine.load({ ...init, log: init.logger.forComponent('promptmesh:engine') })
  let pipeline: Pipeline
  try {
    pipeline = new Pipeline({ engine, store, blockTokens: init.blockTokens, cache: init.cache, adaptive: init.adaptiveFetch, log: init.logger.forComponent('promptmesh:pipeline') })
  } catch (err) {
    await engine.close()
    throw err
  }
  return { engine, store, pipeline, close: async () => { await engine.close() } }
}
