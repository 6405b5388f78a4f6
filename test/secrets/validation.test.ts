import { describe, expect, it } from "vitest";
import { AppError } from "../../src/api/errors.js";
import {
  describeRejectedName,
  validateDescription,
  validateMetadata,
  validateName,
  validateNameList,
  validateNamePrefix,
  validatePageSize,
  validateValue,
  type JsonObject,
} from "../../src/secrets/validation.js";

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).kind).toBe("invalid_argument");
    return (e as AppError).reason;
  }
  throw new Error("expected a validation error");
}

describe("names", () => {
  it("accepts ASCII letter first, then letters, digits, underscores, up to 128", () => {
    for (const n of ["a", "Z", "stripe_api_key", "A1_b2", `a${"b".repeat(127)}`]) expect(validateName(n)).toBe(n);
  });
  it("rejects everything else, without echoing the name", () => {
    const bad = ["", "1abc", "_x", "has-dash", "has space", "dot.name", `a${"b".repeat(128)}`, "ünicode", "a\u0000", "x;DROP TABLE secrets", "a\n"];
    for (const n of bad) {
      expect(reasonOf(() => validateName(n))).toBe("INVALID_NAME");
      try {
        validateName(n);
      } catch (e) {
        if (n.length > 0) expect((e as AppError).message).not.toContain(n);
        expect((e as AppError).metadata).toEqual({ field: "name" });
      }
    }
  });
  it("describes a rejected name by length and hash only", () => {
    const d = describeRejectedName("sk_live_abcdef");
    expect(d.length).toBe(14);
    expect(d.sha256).toMatch(/^[0-9a-f]{12}$/);
    expect(JSON.stringify(d)).not.toContain("sk_live");
  });
  it("prefixes are beginnings of valid names", () => {
    expect(validateNamePrefix("")).toBe("");
    expect(validateNamePrefix("item_")).toBe("item_");
    expect(reasonOf(() => validateNamePrefix("item%"))).toBe("INVALID_NAME");
    expect(reasonOf(() => validateNamePrefix("_x"))).toBe("INVALID_NAME");
  });
});

describe("values", () => {
  it("accepts 1 byte to 64 KiB of UTF-8, counting bytes not characters", () => {
    expect(validateValue("x").length).toBe(1);
    expect(validateValue("x".repeat(65_536)).length).toBe(65_536);
    expect(reasonOf(() => validateValue("x".repeat(65_537)))).toBe("VALUE_TOO_LARGE");
    // 21,846 three-byte characters = 65,538 bytes
    expect(reasonOf(() => validateValue("€".repeat(21_846)))).toBe("VALUE_TOO_LARGE");
  });
  it("rejects empty values and lone surrogates", () => {
    expect(reasonOf(() => validateValue(""))).toBe("INVALID_VALUE");
    expect(reasonOf(() => validateValue("a\uD800b"))).toBe("INVALID_VALUE");
  });
  it("never puts the value in the error", () => {
    try {
      validateValue("s3cr3t".repeat(20_000));
    } catch (e) {
      expect((e as AppError).message).not.toContain("s3cr3t");
    }
  });
});

describe("descriptions and metadata", () => {
  it("descriptions hold at most 1,024 characters", () => {
    expect(validateDescription("é".repeat(1024))).toHaveLength(1024);
    expect(reasonOf(() => validateDescription("x".repeat(1025)))).toBe("INVALID_DESCRIPTION");
  });

  it("metadata: at most 16 KiB of JSON, depth 8, 256 keys", () => {
    expect(validateMetadata({ a: 1, b: [true, null, "x"], c: { d: "e" } })).toBe('{"a":1,"b":[true,null,"x"],"c":{"d":"e"}}');
    expect(reasonOf(() => validateMetadata({ big: "x".repeat(16 * 1024) }))).toBe("INVALID_METADATA");

    let deep: JsonObject = { leaf: 1 };
    for (let i = 0; i < 7; i++) deep = { d: deep };
    expect(() => validateMetadata(deep)).not.toThrow(); // depth 8
    expect(reasonOf(() => validateMetadata({ d: deep }))).toBe("INVALID_METADATA"); // depth 9

    const many = Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`k${i}`, i]));
    expect(() => validateMetadata(many)).not.toThrow();
    expect(reasonOf(() => validateMetadata({ ...many, one_more: 1 }))).toBe("INVALID_METADATA");
    // nested keys count too
    expect(reasonOf(() => validateMetadata({ a: many }))).toBe("INVALID_METADATA");
  });

  it("metadata strings may not hold U+0000 (Postgres jsonb cannot)", () => {
    expect(reasonOf(() => validateMetadata({ a: "x\u0000y" }))).toBe("INVALID_METADATA");
  });
});

describe("page sizes and name lists", () => {
  it("page_size: 0 → 50, capped at 500, negative rejected", () => {
    expect(validatePageSize(0)).toBe(50);
    expect(validatePageSize(7)).toBe(7);
    expect(validatePageSize(10_000)).toBe(500);
    expect(reasonOf(() => validatePageSize(-1))).toBe("INVALID_PAGE_SIZE");
  });
  it("resolve names: 1 to 100 distinct, duplicates collapse", () => {
    expect(validateNameList(["a", "b", "a"])).toEqual(["a", "b"]);
    expect(reasonOf(() => validateNameList([]))).toBe("INVALID_ARGUMENT");
    expect(validateNameList(Array.from({ length: 150 }, (_, i) => `n${i % 100}`))).toHaveLength(100);
    expect(reasonOf(() => validateNameList(Array.from({ length: 101 }, (_, i) => `n${i}`)))).toBe("TOO_MANY_NAMES");
    expect(reasonOf(() => validateNameList(["ok", "not ok"]))).toBe("INVALID_NAME");
  });
});
