import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { SignJWT } from "jose";
import { SUBJECT_PATTERN } from "../../api/limits.js";
import { CliError } from "../cli-error.js";
import { printJson, printLine } from "../output.js";
import { collect, namesFrom } from "../parse-args.js";
import type { Session } from "../session.js";

/**
 * `secrets token`: a development token, minted from the JWT secret that a dev-mode
 * server generated in its data directory (HS256, as the server verifies it). It
 * works only against dev mode: production tokens come from the identity provider,
 * and there is no jwt-secret file to read. It never mints the operator scope.
 */

const SCOPES = ["read", "access", "write", "keys"] as const;
type ScopeName = (typeof SCOPES)[number];
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
    .description("dev mode only: mint a token from the dev server's data directory (never with the operator scope)")
    .addOption(new Option("--data-dir <dir>", "the dev server's data directory").env("SECRETS_DATA_DIR").default(".secrets-data"))
    .option("--developer <id>", "the developer the token acts for (its sub)", "dev")
    .option("--scope <scope>", `a scope: ${SCOPES.join(", ")} (repeatable; default: all four)`, collect)
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
  if (scopes.includes("operator")) throw new CliError("the operator scope is never minted by the CLI; operators get tokens from the identity provider");
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new CliError(`unknown scope(s) ${unknown.join(", ")}: choose from ${SCOPES.join(", ")}`);
  return [...new Set(scopes)] as ScopeName[];
}

function secondsOf(text: string): number {
  const match = /^(\d{1,6})([smhd]?)$/.exec(text.trim());
  if (!match) throw new CliError("--ttl must be a number of seconds or a duration such as 30m, 12h, 1d");
  const unit = { "": 1, s: 1, m: 60, h: 3_600, d: 86_400 }[match[2] as "" | "s" | "m" | "h" | "d"];
  const seconds = Number(match[1]) * unit;
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
