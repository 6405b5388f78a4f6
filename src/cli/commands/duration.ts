import { InvalidArgumentError } from "commander";

/**
 * Durations and points in time as the CLI writes them. A duration is a number of
 * seconds, or a number with a unit (s, m, h, d), e.g. 900, 30m, 12h, 7d; a point in
 * time is ISO 8601 (2026-12-06T04:00:00Z), or a duration before or after now.
 */

const UNITS = { "": 1, s: 1, m: 60, h: 3_600, d: 86_400 } as const;

/** A duration in seconds; undefined when `text` is not one. */
export function durationSeconds(text: string): number | undefined {
  const match = /^(\d{1,6})([smhd]?)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * UNITS[match[2] as keyof typeof UNITS];
}

/** Seconds in the largest unit that divides them exactly: 2592000 → "30d", 5400 → "90m"; what durationSeconds reads back. */
export function formatDuration(seconds: number): string {
  for (const unit of ["d", "h", "m"] as const) {
    if (seconds > 0 && seconds % UNITS[unit] === 0) return `${seconds / UNITS[unit]}${unit}`;
  }
  return `${seconds}s`;
}

/** An ISO 8601 time (at least a date, 2026-12-06); undefined when `text` is not one. */
export function isoTime(text: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** A point in time: ISO 8601, or a duration before now (`ago`) or after it (`ahead`), measured from `now`. */
export function pointInTime(text: string, direction: "ago" | "ahead", now: number = Date.now()): Date {
  const seconds = durationSeconds(text);
  if (seconds !== undefined) return new Date(now + (direction === "ago" ? -seconds : seconds) * 1000);
  const date = isoTime(text);
  if (!date) throw new InvalidArgumentError(`expected an ISO 8601 time (2026-12-06T04:00:00Z) or a duration ${direction} (30m, 12h, 7d)`);
  return date;
}
