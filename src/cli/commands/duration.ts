/**
 * A duration as the CLI writes them: a number of seconds, or a number with a unit
 * (s, m, h, d), e.g. 900, 30m, 12h, 7d. Undefined when `text` is not one.
 */
export function durationSeconds(text: string): number | undefined {
  const match = /^(\d{1,6})([smhd]?)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { "": 1, s: 1, m: 60, h: 3_600, d: 86_400 }[match[2] as "" | "s" | "m" | "h" | "d"];
  return Number(match[1]) * unit;
}
