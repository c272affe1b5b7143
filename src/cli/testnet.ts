// Placeholder until the testnet lands (the testnet engineer replaces this file).
export async function testnetCommand (_argv: string[]): Promise<number> {
  throw new Error('promptmesh testnet is not available in this build yet')
}
