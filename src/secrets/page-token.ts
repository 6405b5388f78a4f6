import { createHash } from "node:crypto";
import { invalid } from "../api/errors.js";

/**
 * Opaque keyset page tokens: base64url of JSON `{ a: <last key>, h: <binding> }`,
 * where the binding is a hash of the developer and every list parameter. A token
 * used with other parameters, by another developer, or altered, is rejected
 * INVALID_ARGUMENT. A caller who forges a well-formed token only moves where their
 * own listing starts, which the parameters allow anyway.
 */
export interface PageTokenCodec<K extends string | number> {
  encode(lastKey: K, binding: readonly string[]): string;
  /** Undefined for an empty token (the first page). */
  decode(token: string, binding: readonly string[]): K | undefined;
}

function bindingHash(binding: readonly string[]): string {
  const h = createHash("sha256");
  for (const part of binding) h.update(`${Buffer.byteLength(part)}:${part};`);
  return h.digest("base64url").slice(0, 22);
}

/** A codec whose keys are checked by `isKey` on the way back in. */
export function pageTokenCodec<K extends string | number>(isKey: (k: unknown) => k is K): PageTokenCodec<K> {
  return {
    encode(lastKey, binding) {
      return Buffer.from(JSON.stringify({ a: lastKey, h: bindingHash(binding) })).toString("base64url");
    },
    decode(token, binding) {
      if (token === "") return undefined;
      const bad = () => invalid("INVALID_PAGE_TOKEN", "page_token", "page_token is malformed or was issued for other parameters");
      if (token.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
      } catch {
        throw bad();
      }
      if (typeof parsed !== "object" || parsed === null) throw bad();
      const { a, h } = parsed as { a?: unknown; h?: unknown };
      if (h !== bindingHash(binding) || !isKey(a)) throw bad();
      return a;
    },
  };
}

/** One page of a listing. */
export interface Page<T> {
  items: T[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/**
 * The page of `rows` fetched with a limit of `pageSize + 1`: the extra row only says
 * that a next page exists, and the token continues after the last row shown.
 */
export function pageOf<R, K extends string | number, T>(
  rows: readonly R[],
  pageSize: number,
  show: (row: R) => T,
  keyOf: (row: R) => K,
  tokens: PageTokenCodec<K>,
  binding: readonly string[],
): Page<T> {
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    items: page.map(show),
    nextPageToken: rows.length > pageSize && last !== undefined ? tokens.encode(keyOf(last), binding) : "",
  };
}
