import { Command, CommanderError } from "commander";
import { describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/cli-error.js";
import { durationSeconds, formatDuration, pointInTime } from "../../src/cli/commands/duration.js";
import { createLifecycle, lifecycleOptions, updateLifecycle, type LifecycleFlags } from "../../src/cli/commands/lifecycle-options.js";

// The expiry and rotation flags of create and update, parsed in process by commander
// as the CLI declares them: what each asks of the SDK, and the combinations that are
// usage errors before anything is sent.

const DAY = 86_400;

/** The flags of `create` (clearable false) or `update` (true) parsed from `args`, or the error the parse threw. */
function parse(args: string[], clearable: boolean): LifecycleFlags {
  const command = lifecycleOptions(new Command("x").exitOverride().configureOutput({ writeErr: () => undefined }), clearable);
  command.parse(args, { from: "user" });
  return command.opts<LifecycleFlags>();
}

function commanderCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof CommanderError) return e.code;
    throw e;
  }
  throw new Error("expected a CommanderError");
}

describe("create's flags", () => {
  it("--expire-in, --expire-at and --rotate-every [--next-rotation] become the SDK's inputs", () => {
    expect(createLifecycle(parse([], false))).toEqual({});
    expect(createLifecycle(parse(["--expire-in", "7d"], false))).toEqual({ ttlSeconds: 7 * DAY });
    expect(createLifecycle(parse(["--expire-in", "90"], false))).toEqual({ ttlSeconds: 90 });
    expect(createLifecycle(parse(["--expire-at", "2027-01-01T00:00:00Z"], false))).toEqual({ expireTime: new Date("2027-01-01T00:00:00Z") });
    expect(createLifecycle(parse(["--rotate-every", "30d"], false))).toEqual({ rotation: { periodSeconds: 30 * DAY } });
    expect(createLifecycle(parse(["--rotate-every", "12h", "--next-rotation", "2027-02-01T08:00:00Z"], false))).toEqual({
      rotation: { periodSeconds: 12 * 3_600, nextRotationTime: new Date("2027-02-01T08:00:00Z") },
    });
  });

  it("refuse an expiry given twice, malformed durations and times, and --next-rotation alone", () => {
    expect(commanderCode(() => parse(["--expire-in", "7d", "--expire-at", "2027-01-01T00:00:00Z"], false))).toBe("commander.conflictingOption");
    for (const bad of [["--expire-in", "0"], ["--expire-in", "7w"], ["--expire-in", "-1d"], ["--rotate-every", "0d"], ["--expire-at", "tomorrow"], ["--expire-at", "2027-13-45"]]) {
      expect(commanderCode(() => parse(bad, false)), bad.join(" ")).toBe("commander.invalidArgument");
    }
    expect(() => createLifecycle(parse(["--next-rotation", "2027-02-01T08:00:00Z"], false))).toThrow(CliError);
    expect(commanderCode(() => parse(["--no-expire"], false))).toBe("commander.unknownOption");
  });
});

describe("update's flags", () => {
  it("--no-expire and --no-rotation clear; the others set as on create", () => {
    expect(updateLifecycle(parse([], true))).toEqual({});
    expect(updateLifecycle(parse(["--no-expire"], true))).toEqual({ expireTime: null });
    expect(updateLifecycle(parse(["--no-rotation"], true))).toEqual({ rotation: null });
    expect(updateLifecycle(parse(["--no-expire", "--no-rotation"], true))).toEqual({ expireTime: null, rotation: null });
    expect(updateLifecycle(parse(["--expire-in", "1h", "--rotate-every", "1h"], true))).toEqual({ ttlSeconds: 3_600, rotation: { periodSeconds: 3_600 } });
  });

  it("refuse setting and clearing one thing at once", () => {
    const conflicting = [
      ["--expire-in", "7d", "--no-expire"],
      ["--no-expire", "--expire-at", "2027-01-01T00:00:00Z"],
      ["--expire-in", "7d", "--expire-at", "2027-01-01T00:00:00Z"],
      ["--rotate-every", "30d", "--no-rotation"],
      ["--no-rotation", "--next-rotation", "2027-01-01T00:00:00Z"],
    ];
    for (const args of conflicting) expect(commanderCode(() => parse(args, true)), args.join(" ")).toBe("commander.conflictingOption");
  });
});

describe("durations and times", () => {
  it("formatDuration writes the largest exact unit, which durationSeconds reads back", () => {
    expect([30 * DAY, 25 * 3_600, 5_400, 61, 3_600].map(formatDuration)).toEqual(["30d", "25h", "90m", "61s", "1h"]);
    for (const seconds of [1, 59, 60, 3_599, 3_600, DAY, 36_500 * DAY]) expect(durationSeconds(formatDuration(seconds))).toBe(seconds);
  });

  it("pointInTime reads ISO 8601, or a duration before or after now", () => {
    const now = Date.parse("2026-12-06T00:00:00Z");
    expect(pointInTime("7d", "ahead", now).toISOString()).toBe("2026-12-13T00:00:00.000Z");
    expect(pointInTime("12h", "ago", now).toISOString()).toBe("2026-12-05T12:00:00.000Z");
    expect(pointInTime("2027-01-01T00:00:00Z", "ahead", now).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(() => pointInTime("next week", "ahead", now)).toThrow(/duration ahead/);
  });
});
