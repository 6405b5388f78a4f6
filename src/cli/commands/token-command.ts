import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { SignJWT } from "jose";
import { SUBJECT_PATTERN } from "../../api/limits.js";
import { CliError } from "../cli-error.js";
import { note, printJson, printLine } from "../output.js";
import { collect, namesFrom } from "../parse-args.js";
import type { Session } from "../session.js";
import { durationSeconds } from "./duration.js";

/**
 * `secrets token`: a development token, minted from the JWT secret that a dev-mode
 * server generated in its data directory (HS256, as the server verifies it). It
 * works only against dev mode: production tokens come from the identity provider,
 * and there is no jwt-secret file to read. The operator scope is minted only when
 * asked for by name (`--scope operator`), with a warning of what it can do.
 */

/** The scopes a token gets when none is asked for: a developer's own, never operator. */
const SCOPES = ["read", "access", "write", "keys"] as const;
/** Every scope `--scope` accepts. */
const ALL_SCOPES = [...SCOPES, "operator"] as const;
type ScopeName = (typeof ALL_SCOPES)[number];
const OPERATOR_WARNING =
  "warning: an operator token can read every developer's audit trail and rotate and shred keys; keep it out of shared shells and files";
/** The service's default longest token lifetime (SECRETS_JWT_MAX_TTL_SECONDS). */
const MAX_TTL_SECONDS = 86_400;

interface TokenOptions {
  dataDir: string;
  developer: string;
  scope?: string[];
  secrets?: string[];
  ttl: string;
  audience?: string;
  issuer?: string;
}

export function registerTokenCommand(program: Command, session: Session): void {
  program
    .command("token")
    .description("dev mode only: mint a token from the dev server's data directory (the operator scope only with --scope operator)")
    .addOption(new Option("--data-dir <dir>", "the dev server's data directory").env("SECRETS_DATA_DIR").default(".secrets-data"))
    .option("--developer <id>", "the developer the token acts for (its sub)", "dev")
    .option("--scope <scope>", `a scope: ${ALL_SCOPES.join(", ")} (repeatable; default: ${SCOPES.join(", ")})`, collect)
    .option("--secrets <names>", "allowlist: the only secret names the token may touch (comma-separated; '' allows none)", collect)
    .option("--ttl <duration>", "lifetime, e.g. 900, 30m, 12h (at most 24h)", "1h")
    .addOption(new Option("--audience <aud>", "the aud claim, when the server checks one").env("SECRETS_JWT_AUDIENCE"))
    .addOption(new Option("--issuer <iss>", "the iss claim, when the server checks one").env("SECRETS_JWT_ISSUER"))
    .action(async (opts: TokenOptions, command: Command) => {
      if (!SUBJECT_PATTERN.test(opts.developer)) throw new CliError(`--developer must match ${SUBJECT_PATTERN.source}`);
      const scopes = scopesOf(opts.scope);
      const ttlSeconds = secondsOf(opts.ttl);
      const allowlist = opts.secrets === undefined ? undefined : namesFrom(opts.secrets, "--secrets");
      const secret = await readJwtSecret(opts.dataDir);

      const iat = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT({ scope: scopes.map((s) => `secrets:${s}`).join(" "), ...(allowlist ? { secrets: allowlist } : {}) })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(opts.developer)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSeconds)
        .setJti(randomUUID());
      if (opts.audience) jwt.setAudience(opts.audience);
      if (opts.issuer) jwt.setIssuer(opts.issuer);
      const token = await jwt.sign(secret);
      if (scopes.includes("operator")) note(OPERATOR_WARNING);

      if (session.options(command).json) {
        printJson({ token, developer: opts.developer, scopes: scopes.map((s) => `secrets:${s}`), secrets: allowlist ?? null, expiresAt: new Date((iat + ttlSeconds) * 1000).toISOString() });
      } else {
        printLine(token);
      }
    });
}

function scopesOf(given: string[] | undefined): ScopeName[] {
  if (!given) return [...SCOPES];
  const scopes = given.flatMap((s) => s.split(",")).map((s) => s.trim().replace(/^secrets:/, ""));
  const unknown = scopes.filter((s) => !(ALL_SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new CliError(`unknown scope(s) ${unknown.join(", ")}: choose from ${ALL_SCOPES.join(", ")}`);
  return [...new Set(scopes)] as ScopeName[];
}

function secondsOf(text: string): number {
  const seconds = durationSeconds(text);
  if (seconds === undefined) throw new CliError("--ttl must be a number of seconds or a duration such as 30m, 12h, 1d");
  if (seconds < 1 || seconds > MAX_TTL_SECONDS) throw new CliError("--ttl must be between 1 second and 24h");
  return seconds;
}

/** The dev server's HS256 secret: the trimmed text of `<dataDir>/jwt-secret`, as the server reads it. */
async function readJwtSecret(dataDir: string): Promise<Uint8Array> {
  const path = join(dataDir, "jwt-secret");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new CliError(
        `no dev-mode JWT secret at ${path}: \`secrets token\` works only with the data directory of a dev-mode server ` +
          "(npm start creates it; set --data-dir or SECRETS_DATA_DIR); in production, get a token from your identity provider",
      );
    }
    throw new CliError(`cannot read ${path}: ${code ?? "error"}`);
  }
  const secret = new TextEncoder().encode(text.trim());
  if (secret.length < 32) throw new CliError(`${path} does not hold a dev-mode JWT secret (too short)`);
  return secret;
}
