/** A catalog message failed validation (malformed, wrong model, inconsistent or oversized filter). */
export class InvalidCatalogError extends Error {
  static override name = 'InvalidCatalogError'
  override name = 'InvalidCatalogError'
}
