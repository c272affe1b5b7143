import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface CatalogMessage {
  fingerprint: string
  seq: number
  entries: number
  bits: number
  hashes: number
  seed: number
  filter: Uint8Array<ArrayBuffer>
  publisher: Uint8Array<ArrayBuffer>
}

export namespace CatalogMessage {
  let _codec: Codec<CatalogMessage>

  export const codec = (): Codec<CatalogMessage> => {
    if (_codec == null) {
      _codec = message<CatalogMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.fingerprint != null && obj.fingerprint !== '')) {
          w.uint32(10)
          w.string(obj.fingerprint)
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.seq)
        }

        if ((obj.entries != null && obj.entries !== 0)) {
          w.uint32(24)
          w.uint32(obj.entries)
        }

        if ((obj.bits != null && obj.bits !== 0)) {
          w.uint32(32)
          w.uint32(obj.bits)
        }

        if ((obj.hashes != null && obj.hashes !== 0)) {
          w.uint32(40)
          w.uint32(obj.hashes)
        }

        if ((obj.seed != null && obj.seed !== 0)) {
          w.uint32(48)
          w.uint32(obj.seed)
        }

        if ((obj.filter != null && obj.filter.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.filter)
        }

        if ((obj.publisher != null && obj.publisher.byteLength > 0)) {
          w.uint32(66)
          w.bytes(obj.publisher)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          fingerprint: '',
          seq: 0,
          entries: 0,
          bits: 0,
          hashes: 0,
          seed: 0,
          filter: uint8ArrayAlloc(0),
          publisher: uint8ArrayAlloc(0)
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
              obj.seq = reader.uint64Number()
              break
            }
            case 3: {
              obj.entries = reader.uint32()
              break
            }
            case 4: {
              obj.bits = reader.uint32()
              break
            }
            case 5: {
              obj.hashes = reader.uint32()
              break
            }
            case 6: {
              obj.seed = reader.uint32()
              break
            }
            case 7: {
              obj.filter = reader.bytes()
              break
            }
            case 8: {
              obj.publisher = reader.bytes()
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
                field: `${prefix}.fingerprint`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.entries`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.bits`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.hashes`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.seed`,
                value: reader.uint32()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.filter`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.publisher`,
                value: reader.bytes()
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

  export interface CatalogMessageFingerprintFieldEvent {
    field: '$.fingerprint'
    value: string
  }

  export interface CatalogMessageSeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export interface CatalogMessageEntriesFieldEvent {
    field: '$.entries'
    value: number
  }

  export interface CatalogMessageBitsFieldEvent {
    field: '$.bits'
    value: number
  }

  export interface CatalogMessageHashesFieldEvent {
    field: '$.hashes'
    value: number
  }

  export interface CatalogMessageSeedFieldEvent {
    field: '$.seed'
    value: number
  }

  export interface CatalogMessageFilterFieldEvent {
    field: '$.filter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface CatalogMessagePublisherFieldEvent {
    field: '$.publisher'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<CatalogMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, CatalogMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CatalogMessage>): CatalogMessage {
    return decodeMessage(buf, CatalogMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CatalogMessage>): Generator<CatalogMessageFingerprintFieldEvent | CatalogMessageSeqFieldEvent | CatalogMessageEntriesFieldEvent | CatalogMessageBitsFieldEvent | CatalogMessageHashesFieldEvent | CatalogMessageSeedFieldEvent | CatalogMessageFilterFieldEvent | CatalogMessagePublisherFieldEvent> {
    return streamMessage(buf, CatalogMessage.codec(), opts)
  }
}
