/**
 * The API's input limits and naming rules (docs/api.md), written once for both sides: the service enforces
 * them (secrets/validation.ts, auth, audit) and the SDK and the CLI check against them before they send.
 * Shared by server and SDK, so it imports nothing.
 */
export const LIMITS = {
  nameMaxLength: 128,
  valueMaxBytes: 64 * 1024,
  descriptionMaxChars: 1024,
  metadataMaxBytes: 16 * 1024,
  metadataMaxDepth: 8,
  metadataMaxKeys: 256,
  pageSizeDefault: 50,
  pageSizeMax: 500,
  resolveMaxNames: 100,
} as const;

/** A secret name: an ASCII letter, then letters, digits and underscores; 1 to `nameMaxLength` characters. */
const NAME = `[A-Za-z][A-Za-z0-9_]{0,${LIMITS.nameMaxLength - 1}}`;

/** Secret names (and the names a token's `secrets` allowlist may hold). */
export const NAME_PATTERN = new RegExp(`^${NAME}$`);
/** A prefix of some valid name (possibly empty). */
export const NAME_PREFIX_PATTERN = new RegExp(`^(?:${NAME})?$`);

/** A token's `sub`, the developer a call acts for (docs/api.md, Tokens). */
export const SUBJECT_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;
