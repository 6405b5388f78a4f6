import { InvalidArgumentError, Option, type Command } from "commander";
import type { CreateSecretInput, UpdateSecretInput } from "@secrets-service/client";
import { CliError } from "../cli-error.js";
import { durationSeconds, isoTime } from "./duration.js";

/**
 * The expiry and rotation flags of `create` and `update`: `--expire-in 7d` or
 * `--expire-at TIME`, `--rotate-every 30d [--next-rotation TIME]`, and on update
 * `--no-expire` and `--no-rotation`, turned into the SDK's inputs. Flags that say
 * two things about one setting are a usage error (commander's conflicts, exit 2);
 * ranges (an expiry in the past, a period under an hour) are the service's to check.
 */

/** The flags as commander parses them. */
export interface LifecycleFlags {
  expireIn?: number;
  expireAt?: Date;
  rotateEvery?: number;
  nextRotation?: Date;
  /** False with `--no-expire` (update only). */
  expire?: boolean;
  /** False with `--no-rotation` (update only). */
  rotation?: boolean;
}

/** Adds the flags to `command`; `clearable` adds `--no-expire` and `--no-rotation` (update). */
export function lifecycleOptions(command: Command, clearable: boolean): Command {
  const expiry = clearable ? ["expireAt", "expire"] : ["expireAt"];
  command
    .addOption(new Option("--expire-in <duration>", "expire after this long (30m, 12h, 7d): the secret then goes to the recovery bin").argParser(positiveDuration).conflicts(expiry))
    .addOption(new Option("--expire-at <time>", "expire at this ISO 8601 time (2026-12-31T00:00:00Z)").argParser(isoTimeOption).conflicts(clearable ? ["expire"] : []))
    .addOption(
      new Option("--rotate-every <duration>", "a rotation reminder every this long (at least 1h, e.g. 30d)").argParser(positiveDuration).conflicts(clearable ? ["rotation"] : []),
    )
    .addOption(
      new Option("--next-rotation <time>", "with --rotate-every: when the first rotation is due (default: one period from now)")
        .argParser(isoTimeOption)
        .conflicts(clearable ? ["rotation"] : []),
    );
  if (clearable) {
    command.option("--no-expire", "the secret no longer expires").option("--no-rotation", "remove the rotation schedule");
  }
  return command;
}

/** What the flags ask of `create`; keys absent when they say nothing. */
export function createLifecycle(flags: LifecycleFlags): Pick<CreateSecretInput, "ttlSeconds" | "expireTime" | "rotation"> {
  if (flags.nextRotation !== undefined && flags.rotateEvery === undefined) throw new CliError("--next-rotation needs --rotate-every");
  return {
    ...(flags.expireIn !== undefined ? { ttlSeconds: flags.expireIn } : {}),
    ...(flags.expireAt !== undefined ? { expireTime: flags.expireAt } : {}),
    ...(flags.rotateEvery !== undefined
      ? { rotation: { periodSeconds: flags.rotateEvery, ...(flags.nextRotation ? { nextRotationTime: flags.nextRotation } : {}) } }
      : {}),
  };
}

/** What the flags ask of `update`: as for `create`, and `null` to clear with --no-expire or --no-rotation. */
export function updateLifecycle(flags: LifecycleFlags): Pick<UpdateSecretInput, "ttlSeconds" | "expireTime" | "rotation"> {
  return {
    ...createLifecycle(flags),
    ...(flags.expire === false ? { expireTime: null } : {}),
    ...(flags.rotation === false ? { rotation: null } : {}),
  };
}

/** A duration above zero, in seconds. */
export function positiveDuration(text: string): number {
  const seconds = durationSeconds(text);
  if (seconds === undefined || seconds === 0) throw new InvalidArgumentError("expected a duration above zero: seconds, or a number with s, m, h or d (7d)");
  return seconds;
}

/** An ISO 8601 time. */
export function isoTimeOption(text: string): Date {
  const date = isoTime(text);
  if (!date) throw new InvalidArgumentError("expected an ISO 8601 time, e.g. 2026-12-31T00:00:00Z");
  return date;
}
