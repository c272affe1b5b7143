/** The prompt and the tokens to generate do not fit the context. */
export class PromptTooLongError extends Error {
  static override name = 'PromptTooLongError'
  override name = 'PromptTooLongError'
}
