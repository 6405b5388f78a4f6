/**
 * The hand-written encoders of the value-carrying responses must write exactly what
 * protobuf-es writes for the same message, and decode back to it.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { AccessSecretResponseSchema, ResolveSecretsResponseSchema } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { encodeAccessSecretResponse, encodeResolveSecretsResponse } from "../../src/server/wire-encoders.js";

const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,127}$/);
// Any well-formed text, including long values (multi-byte length prefixes) and the empty string.
const value = fc.oneof(fc.string({ unit: "grapheme", maxLength: 64 }), fc.string({ minLength: 100, maxLength: 20_000 }));
const int32 = fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, 1, 127, 128, 16_383, 16_384, -1));

describe("encodeAccessSecretResponse", () => {
  it("writes protobuf-es's bytes for every name, version and value", () => {
    fc.assert(
      fc.property(fc.oneof(name, fc.constant("")), int32, value, (n, version, v) => {
        const ours = encodeAccessSecretResponse(n, version, Buffer.from(v, "utf8")).bytes;
        const theirs = toBinary(AccessSecretResponseSchema, create(AccessSecretResponseSchema, { name: n, version, value: v }));
        expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
        const back = fromBinary(AccessSecretResponseSchema, ours);
        expect([back.name, back.version, back.value]).toEqual([n, version, v]);
      }),
      { numRuns: 500 },
    );
  });
});

describe("encodeResolveSecretsResponse", () => {
  it("writes protobuf-es's bytes for every map of names to values, in order", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n, maxLength: 20 }), (pairs) => {
        const ours = encodeResolveSecretsResponse(new Map(pairs.map(([n, v]) => [n, Buffer.from(v, "utf8")]))).bytes;
        // Names start with a letter, so an object keeps their insertion order as a Map does.
        const values = Object.fromEntries(pairs);
        const theirs = toBinary(ResolveSecretsResponseSchema, create(ResolveSecretsResponseSchema, { values }));
        expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
        expect(fromBinary(ResolveSecretsResponseSchema, ours).values).toEqual(values);
      }),
      { numRuns: 300 },
    );
  });

  it("writes nothing for no values", () => {
    expect(encodeResolveSecretsResponse(new Map()).bytes.length).toBe(0);
  });
});
