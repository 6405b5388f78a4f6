/** The input limits (docs/api.md). Part of the API: clients validate against the same numbers. */
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

/** Names: ASCII letter first, then letters, digits and underscores; 1–128 characters. */
export const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;
/** A prefix of some valid name (possibly empty). */
export const NAME_PREFIX_PATTERN = /^(?:[A-Za-z][A-Za-z0-9_]{0,127})?$/;
