import { expect } from 'chai'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import type { PerformanceEntry } from 'node:perf_hooks'
import { IdleCollector } from '../../src/idle-gc.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('idle collector (garbage collected between queries, not during them)', () => {
  it('collects once, after the last piece of work has been quiet for a while', async () => {
    let runs = 0
    const idle = new IdleCollector({ quietMs: 30, collect: () => { runs++ } })
    const query = idle.busy()
    const serve = idle.busy()
    query()
    await sleep(60)
    // a serve still running: no collection, however long
    expect(runs).to.equal(0)
    serve()
    serve() // a second call is harmless
    await sleep(10)
    expect(runs, 'not before the quiet period').to.equal(0)
    await sleep(60)
    expect(runs).to.equal(1)
    await sleep(60)
    expect(runs, 'nothing ran since: nothing to collect').to.equal(1)
  })

  it('puts the collection off while work keeps arriving', async () => {
    let runs = 0
    const idle = new IdleCollector({ quietMs: 40, collect: () => { runs++ } })
    for (let i = 0; i < 5; i++) {
      idle.busy()()
      await sleep(15)
    }
    expect(runs).to.equal(0)
    await sleep(80)
    expect(runs).to.equal(1)
  })

  it('runs a real full collection by default', async () => {
    const majors: number[] = []
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(e.startTime)
      }
    })
    observer.observe({ entryTypes: ['gc'] })
    try {
      const idle = new IdleCollector({ quietMs: 10 })
      const before = performance.now()
      idle.busy()()
      await sleep(100)
      expect(idle.collections).to.equal(1)
      expect(majors.filter(t => t >= before).length, 'a mark-compact after the work ended').to.be.greaterThan(0)
    } finally {
      observer.disconnect()
    }
  })
})
