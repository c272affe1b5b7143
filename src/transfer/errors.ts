/** A chunk's bytes do not match the size or SHA-256 its header declared. Ends use of that peer for the request. */
export class ChunkVerificationError extends Error {
  static override name = 'ChunkVerificationError'
  override name = 'ChunkVerificationError'
  readonly key: string

  constructor (key: string, message: string) {
    super(`chunk ${key}: ${message}`)
    this.key = key
  }
}

/** A frame's length prefix exceeds the limit for its position. */
export class FrameTooLargeError extends Error {
  static override name = 'FrameTooLargeError'
  override name = 'FrameTooLargeError'
}

/** The remote broke the protocol: malformed length prefix or message, answer out of order, empty data frame... */
export class KvProtocolError extends Error {
  static override name = 'KvProtocolError'
  override name = 'KvProtocolError'
}

/** The stream ended before a complete response (or request) was read. */
export class StreamEndedError extends Error {
  static override name = 'StreamEndedError'
  override name = 'StreamEndedError'
}

export type RejectionStatus = 'bad-request' | 'wrong-model' | 'busy'

/** The server refused the whole request (BAD_REQUEST, WRONG_MODEL or BUSY). */
export class RequestRejectedError extends Error {
  static override name = 'RequestRejectedError'
  override name = 'RequestRejectedError'
  readonly status: RejectionStatus

  constructor (status: RejectionStatus, message: string) {
    super(`request rejected (${status})${message === '' ? '' : `: ${message}`}`)
    this.status = status
  }
}

/** A client asked for more keys in one request than it is configured (or the protocol) to allow. */
export class TooManyKeysError extends Error {
  static override name = 'TooManyKeysError'
  override name = 'TooManyKeysError'
}

/** A key is not a 64-character lowercase hex SHA-256. */
export class InvalidChunkKeyError extends Error {
  static override name = 'InvalidChunkKeyError'
  override name = 'InvalidChunkKeyError'
}

/** The transfer was abandoned by its consumer (generator returned early) or the service stopped. */
export class TransferAbortedError extends Error {
  static override name = 'TransferAbortedError'
  override name = 'TransferAbortedError'
}
