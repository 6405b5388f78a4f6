import type { AccessSecretResponseSchema, ResolveSecretsResponseSchema } from "../api/gen/secrets/v1/secrets_pb.js";
import { EncodedResponse } from "./grpc-adapter.js";

/**
 * Hand-written protobuf encoders for the two responses that carry secret values,
 * the calls agent runtimes make most. They write the value's plaintext bytes as
 * they came out of AES-GCM, with no UTF-8 decode into a string and encode back, and
 * skip protobuf-es's reflective walk; together that was a tenth of a cache hit's
 * CPU. The bytes are what protobuf-es writes for the same message (fields in number
 * order, proto3 defaults omitted; test/server/wire-encoders.test.ts checks both
 * ways). Values are UTF-8 already: they were validated as strings when written.
 *
 *   AccessSecretResponse   { string name = 1; int32 version = 2; string value = 3; }
 *   ResolveSecretsResponse { map<string, string> values = 1; }
 *     a map entry is a nested message { string key = 1; string value = 2; }
 */

const LEN = 2; // wire type of strings, bytes and nested messages
const VARINT = 0;

export function encodeAccessSecretResponse(
  name: string,
  version: number,
  value: Uint8Array,
): EncodedResponse<typeof AccessSecretResponseSchema> {
  const nameBytes = Buffer.from(name, "utf8");
  const w = new Writer(fieldSize(nameBytes.length) + 11 + fieldSize(value.length));
  if (nameBytes.length > 0) w.bytesField(1, nameBytes);
  if (version !== 0) w.int32Field(2, version);
  if (value.length > 0) w.bytesField(3, value);
  return new EncodedResponse(w.finish());
}

export function encodeResolveSecretsResponse(
  values: ReadonlyMap<string, Uint8Array>,
): EncodedResponse<typeof ResolveSecretsResponseSchema> {
  const entries = [...values].map(([name, value]) => {
    const key = Buffer.from(name, "utf8");
    // protobuf-es writes both fields of a map entry, empty or not.
    return { key, value, size: fieldSize(key.length) + fieldSize(value.length) };
  });
  const w = new Writer(entries.reduce((n, e) => n + fieldSize(e.size), 0));
  for (const e of entries) {
    w.tag(1, LEN);
    w.varint(e.size);
    w.bytesField(1, e.key);
    w.bytesField(2, e.value);
  }
  return new EncodedResponse(w.finish());
}

/** Bytes of a length-delimited field of `n` bytes with a one-byte tag. */
function fieldSize(n: number): number {
  return 1 + varintSize(n) + n;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size += 1;
  }
  return size;
}

class Writer {
  private readonly buf: Buffer;
  private at = 0;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** A non-negative integer below 2^53. */
  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.at++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.at++] = n;
  }

  bytesField(field: number, bytes: Uint8Array): void {
    this.tag(field, LEN);
    this.varint(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** int32: a negative value is sign-extended to 64 bits, ten bytes, as protobuf requires. */
  int32Field(field: number, value: number): void {
    this.tag(field, VARINT);
    if (value >= 0) return this.varint(value);
    let n = BigInt.asUintN(64, BigInt(value));
    while (n >= 0x80n) {
      this.buf[this.at++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.at++] = Number(n);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}
