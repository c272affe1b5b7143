import { KvHeader, KvRequest } from '../../protocols/kv.js'
import { MAX_ACCEPT_ENCODINGS, MAX_KEYS_PER_REQUEST } from './constants.js'
import { KvProtocolError, TooManyKeysError } from './errors.js'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Bytes of a chunk key on the wire (a raw SHA-256). */
export const KEY_BYTES = 32

/**
 * Decodes a request frame's payload. Throws TooManyKeysError beyond `maxKeys` (checked while
 * decoding, so a huge key list is never built) and KvProtocolError for anything else malformed,
 * including keys that are not KEY_BYTES long. Never another error type: protons' own decoder throws
 * RangeErrors on truncated input.
 */
export function decodeKvRequest (frame: Uint8Array | Uint8ArrayList, maxKeys = MAX_KEYS_PER_REQUEST): KvRequest {
  let request: KvRequest
  try {
    request = KvRequest.decode(frame, { limits: { keys: maxKeys, acceptEncodings: MAX_ACCEPT_ENCODINGS } })
  } catch (err) {
    if ((err as Error)?.name === 'MaxLengthError' && (err as Error).message.includes('"keys"')) throw new TooManyKeysError(`too many keys: at most ${maxKeys} per request`)
    throw new KvProtocolError(`malformed request: ${(err as Error)?.message ?? String(err)}`)
  }
  for (const key of request.keys) {
    if (key.byteLength !== KEY_BYTES) throw new KvProtocolError(`keys must be ${KEY_BYTES} bytes, got ${key.byteLength}`)
  }
  return request
}

/** Decodes a header frame's payload; throws KvProtocolError when it is malformed (unknown status included). */
export function decodeKvHeader (frame: Uint8Array | Uint8ArrayList): KvHeader {
  try {
    return KvHeader.decode(frame)
  } catch (err) {
    throw new KvProtocolError(`malformed header: ${(err as Error)?.message ?? String(err)}`)
  }
}
