/** The prompt and the tokens to generate do not fit the context. */
export class PromptTooLongError extends Error {
  static override name = 'PromptTooLongError'
  override name = 'PromptTooLongError'
}

/** Blocks longer than the model's sliding window: no block could ever be cut from a saved state. */
export class BlockTooLongError extends Error {
  static override name = 'BlockTooLongError'
  override name = 'BlockTooLongError'
}
