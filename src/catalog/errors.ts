/**
 * A catalog message failed validation (malformed, forged, wrong model, inconsistent or oversized
 * filter). `offence` says how the sender is judged: `limit` for a filter over the size bound, `fault`
 * for everything else.
 */
export class InvalidCatalogError extends Error {
  static override name = 'InvalidCatalogError'
  override name = 'InvalidCatalogError'
  readonly offence: 'limit' | 'fault'

  constructor (message: string, offence: 'limit' | 'fault' = 'fault') {
    super(message)
    this.offence = offence
  }
}
