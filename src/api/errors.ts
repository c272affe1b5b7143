/** An error answered in OpenAI's JSON error shape with an HTTP status. */
export class ApiError extends Error {
  static override name = 'ApiError'
  override name = 'ApiError'
  constructor (readonly status: number, message: string, readonly type = 'invalid_request_error', readonly param: string | null = null, readonly code: string | null = null) {
    super(message)
  }

  toJSON (): { error: { message: string, type: string, param: string | null, code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}
