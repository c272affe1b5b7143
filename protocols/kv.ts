import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface KvRequest {
  fingerprint: string
  keys: Uint8Array<ArrayBuffer>[]
  acceptEncodings: string[]
}

export namespace KvRequest {
  let _codec: Codec<KvRequest>

  export const codec = (): Codec<KvRequest> => {
    if (_codec == null) {
      _codec = message<KvRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.fingerprint != null && obj.fingerprint !== '')) {
          w.uint32(10)
          w.string(obj.fingerprint)
        }

        if (obj.keys != null && obj.keys.length > 0) {
          for (const value of obj.keys) {
            w.uint32(18)
            w.bytes(value)
          }
        }

        if (obj.acceptEncodings != null && obj.acceptEncodings.length > 0) {
          for (const value of obj.acceptEncodings) {
            w.uint32(26)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          fingerprint: '',
          keys: [],
          acceptEncodings: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.fingerprint = reader.string()
              break
            }
            case 2: {
              if (opts.limits?.keys != null && obj.keys.length === opts.limits.keys) {
                throw new MaxLengthError('Decode error - repeated field "keys" had too many elements')
              }

              obj.keys.push(reader.bytes())
              break
            }
            case 3: {
              if (opts.limits?.acceptEncodings != null && obj.acceptEncodings.length === opts.limits.acceptEncodings) {
                throw new MaxLengthError('Decode error - repeated field "acceptEncodings" had too many elements')
              }

              obj.acceptEncodings.push(reader.string())
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          keys: 0,
          acceptEncodings: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.fingerprint`,
                value: reader.string()
              }
              break
            }
            case 2: {
              if (opts.limits?.keys != null && obj.keys === opts.limits.keys) {
                throw new MaxLengthError('Streaming decode error - repeated field "keys" had too many elements')
              }

              yield {
                field: `${prefix}.keys[]`,
                index: obj.keys,
                value: reader.bytes()
              }

              obj.keys++

              break
            }
            case 3: {
              if (opts.limits?.acceptEncodings != null && obj.acceptEncodings === opts.limits.acceptEncodings) {
                throw new MaxLengthError('Streaming decode error - repeated field "acceptEncodings" had too many elements')
              }

              yield {
                field: `${prefix}.acceptEncodings[]`,
                index: obj.acceptEncodings,
                value: reader.string()
              }

              obj.acceptEncodings++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface KvRequestFingerprintFieldEvent {
    field: '$.fingerprint'
    value: string
  }

  export interface KvRequestKeysFieldEvent {
    field: '$.keys[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface KvRequestAcceptEncodingsFieldEvent {
    field: '$.acceptEncodings[]'
    index: number
    value: string
  }

  export function encode (obj: Partial<KvRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, KvRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<KvRequest>): KvRequest {
    return decodeMessage(buf, KvRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<KvRequest>): Generator<KvRequestFingerprintFieldEvent | KvRequestKeysFieldEvent | KvRequestAcceptEncodingsFieldEvent> {
    return streamMessage(buf, KvRequest.codec(), opts)
  }
}

export interface KvHeader {
  status: KvHeader.Status
  key: Uint8Array<ArrayBuffer>
  size: number
  sha256: Uint8Array<ArrayBuffer>
  message: string
  encoding: string
  encodedSize: number
}

export namespace KvHeader {
  export enum Status {
    UNSPECIFIED = 'UNSPECIFIED',
    FOUND = 'FOUND',
    NOT_FOUND = 'NOT_FOUND',
    ERROR = 'ERROR',
    BAD_REQUEST = 'BAD_REQUEST',
    WRONG_MODEL = 'WRONG_MODEL',
    BUSY = 'BUSY'
  }

  enum __StatusValues {
    UNSPECIFIED = 0,
    FOUND = 1,
    NOT_FOUND = 2,
    ERROR = 3,
    BAD_REQUEST = 4,
    WRONG_MODEL = 5,
    BUSY = 6
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<KvHeader>

  export const codec = (): Codec<KvHeader> => {
    if (_codec == null) {
      _codec = message<KvHeader>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(8)
          KvHeader.Status.codec().encode(obj.status, w)
        }

        if ((obj.key != null && obj.key.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.key)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(24)
          w.uint32(obj.size)
        }

        if ((obj.sha256 != null && obj.sha256.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.sha256)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(42)
          w.string(obj.message)
        }

        if ((obj.encoding != null && obj.encoding !== '')) {
          w.uint32(50)
          w.string(obj.encoding)
        }

        if ((obj.encodedSize != null && obj.encodedSize !== 0)) {
          w.uint32(56)
          w.uint32(obj.encodedSize)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          status: Status.UNSPECIFIED,
          key: uint8ArrayAlloc(0),
          size: 0,
          sha256: uint8ArrayAlloc(0),
          message: '',
          encoding: '',
          encodedSize: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.status = KvHeader.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.key = reader.bytes()
              break
            }
            case 3: {
              obj.size = reader.uint32()
              break
            }
            case 4: {
              obj.sha256 = reader.bytes()
              break
            }
            case 5: {
              obj.message = reader.string()
              break
            }
            case 6: {
              obj.encoding = reader.string()
              break
            }
            case 7: {
              obj.encodedSize = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.status`,
                value: KvHeader.Status.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.key`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.sha256`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.message`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.encoding`,
                value: reader.string()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.encodedSize`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface KvHeaderStatusFieldEvent {
    field: '$.status'
    value: KvHeader.Status
  }

  export interface KvHeaderKeyFieldEvent {
    field: '$.key'
    value: Uint8Array<ArrayBuffer>
  }

  export interface KvHeaderSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface KvHeaderSha256FieldEvent {
    field: '$.sha256'
    value: Uint8Array<ArrayBuffer>
  }

  export interface KvHeaderMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export interface KvHeaderEncodingFieldEvent {
    field: '$.encoding'
    value: string
  }

  export interface KvHeaderEncodedSizeFieldEvent {
    field: '$.encodedSize'
    value: number
  }

  export function encode (obj: Partial<KvHeader>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, KvHeader.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<KvHeader>): KvHeader {
    return decodeMessage(buf, KvHeader.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<KvHeader>): Generator<KvHeaderStatusFieldEvent | KvHeaderKeyFieldEvent | KvHeaderSizeFieldEvent | KvHeaderSha256FieldEvent | KvHeaderMessageFieldEvent | KvHeaderEncodingFieldEvent | KvHeaderEncodedSizeFieldEvent> {
    return streamMessage(buf, KvHeader.codec(), opts)
  }
}
