import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Dev mode's generated secrets, like `vault server -dev`: a master key and a JWT
 * secret created once in the data directory (files 0600, directory 0700) and reused
 * on later starts, so secrets stored in the embedded database stay readable.
 */
export interface DevSecrets {
  masterKeys: string;
  jwtSecret: Uint8Array;
}

export const DEV_FILES = {
  masterKeys: "master-keys",
  jwtSecret: "jwt-secret",
  token: "dev-token",
} as const;

export function loadOrCreateDevSecrets(dataDir: string): DevSecrets {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const masterKeys = readOrCreate(join(dataDir, DEV_FILES.masterKeys), () => `k1:${randomBytes(32).toString("base64")}\n`);
  const jwtSecret = readOrCreate(join(dataDir, DEV_FILES.jwtSecret), () => `${randomBytes(48).toString("base64url")}\n`);
  return { masterKeys, jwtSecret: new TextEncoder().encode(jwtSecret.trim()) };
}

/** Writes the printed developer token where the CLI and scripts can read it. */
export function writeDevToken(dataDir: string, token: string): string {
  const path = join(dataDir, DEV_FILES.token);
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

function readOrCreate(path: string, make: () => string): string {
  if (!existsSync(path)) {
    try {
      writeFileSync(path, make(), { mode: 0o600, flag: "wx" });
    } catch (e) {
      // Another process created it first: use theirs.
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
  }
  chmodSync(path, 0o600);
  return readFileSync(path, "utf8");
}
/**
 * What dev mode prints at start: the token, the CLI set-up line and `buf curl` lines,
 * each of which works as printed (from the project directory) against the address the
 * server actually listens on.
 */
export function devBanner(port: number, host: string, token: string, tokenPath: string): string {
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const url = `http://${address}`;
  return [
    "",
    "Secrets service running in DEV MODE: embedded database, generated keys, loopback only. Not for production.",
    "",
    `Developer token (24 h; scopes read, access, write, keys; also in ${tokenPath}):`,
    "",
    `    ${token}`,
    "",
    "Use the secrets CLI (paste into your shell; secrets token mints more, secrets --help lists the commands):",
    "",
    `    export SECRETS_ADDR=${address} SECRETS_TOKEN=${token}`,
    "",
    "Or buf curl:",
    "",
    `    npx buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer ${token}" \\`,
    `      -d '{"name":"stripe_api_key","value":"sk_test_123","description":"Stripe test key"}' \\`,
    `      ${url}/secrets.v1.SecretService/CreateSecret`,
    "",
    `    npx buf curl --protocol grpc --http2-prior-knowledge --list-methods ${url}`,
    "",
  ].join("\n");
}

