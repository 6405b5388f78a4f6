import { createSecretRedactor } from "@secrets-service/client";

/**
 * The strings this CLI process must never print outside a command's own output:
 * the token, and every value a command read or received. Commands register them as
 * they come in; the error boundary (main.ts) passes each line it prints through
 * `redactSensitive` as a safety net under messages that are built never to hold
 * them, and as the one defence of SECRETS_DEBUG output, which shows third-party
 * error text. One CLI process runs one command, so a process-wide list fits.
 */

const known: [label: string, value: string][] = [];

/**
 * Shorter strings are not redacted: a value of one to three characters also stands
 * in ordinary text (a path, a word of the message), and replacing every occurrence
 * would garble the line while protecting next to nothing.
 */
const MIN_REDACTED_LENGTH = 4;

/** Remembers `value` (labelled, e.g. "token" or a secret's name) as never to be printed in an error. */
export function rememberSensitive(label: string, value: string): void {
  if (value.length >= MIN_REDACTED_LENGTH) known.push([label, value]);
}

/**
 * `text` with remembered strings replaced by `[REDACTED:label]`. By default only
 * strings that stand in `text` as written are looked for, which is quick with many
 * values (an import of thousands); `encoded` also looks for every string's URL, JSON,
 * hex and base64 forms, which costs time in proportion to their number.
 */
export function redactSensitive(text: string, options: { encoded?: boolean } = {}): string {
  const candidates = options.encoded ? known : known.filter(([, value]) => text.includes(value));
  if (candidates.length === 0) return text;
  // Unique keys: one label may have several values (the token as given and as trimmed).
  const secrets = Object.fromEntries(candidates.map(([label, value], i) => [`${label}#${i}`, value]));
  return createSecretRedactor(secrets)(text).replace(/\[REDACTED:(.*?)#\d+\]/g, "[REDACTED:$1]");
}
