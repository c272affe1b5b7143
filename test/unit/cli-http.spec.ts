import { createServer } from 'node:http'
import { expect } from 'chai'
import { apiJson } from '../../src/cli/http.js'
import type { AddressInfo } from 'node:net'

describe('the CLI talking to a node', () => {
  it('sends the key and the JSON body, and turns failures into messages a user can act on', async () => {
    const seen: Array<{ method?: string, auth?: string, type?: string, body: string }> = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => { body += c.toString() })
      req.on('end', () => {
        seen.push({ method: req.method, auth: req.headers.authorization, type: req.headers['content-type'], body })
        if (req.headers.authorization !== 'Bearer k') {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'a valid API key is required' } }))
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
        }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      expect(await apiJson(`${url}/v1/completions`, { key: 'k', body: { prompt: 'x' } })).to.deep.equal({ ok: true })
      expect(seen[0]).to.deep.equal({ method: 'POST', auth: 'Bearer k', type: 'application/json', body: '{"prompt":"x"}' })
      const denied = await apiJson(`${url}/status`).catch((err: Error) => err.message)
      expect(denied).to.equal(`${url}/status answered 401: a valid API key is required`)
      expect(seen[1]?.method).to.equal('GET')
    } finally {
      await new Promise(resolve => server.close(resolve))
    }
    // nobody listens there any more
    const gone = await apiJson(`${url}/status`, { timeoutMs: 5_000 }).catch((err: Error) => err.message)
    expect(gone).to.match(new RegExp(`^cannot reach a node at ${url}: .*is 'promptmesh start' running\\? see --api`))
  })
})
