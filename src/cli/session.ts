import type { Command } from "commander";
import { SecretsClient, type TlsOptions } from "@secrets-service/client";
import { CliError, EXIT } from "./cli-error.js";

/**
 * One invocation of the CLI: the global options, and the SDK client made from
 * them on first use (commands such as `token` need no client, nor a token).
 * main.ts closes it when the command is done, so the process can exit.
 */

/** The options every command accepts (declared in program.ts). */
export interface GlobalOptions {
  addr: string;
  token?: string;
  tls?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
  timeout: string;
  json?: boolean;
}

/** What a command's action works with. */
export interface Session {
  /** The global options, as given to `command`. */
  options(command: Command): GlobalOptions;
  /** The SDK client for `command`'s global options (made once). */
  client(command: Command): SecretsClient;
  close(): void;
}

/** A session for this process. */
export function createSession(): Session {
  let client: SecretsClient | undefined;

  const options = (command: Command) => command.optsWithGlobals<GlobalOptions>();

  return {
    options,
    client(command) {
      if (client) return client;
      const opts = options(command);
      if (!opts.token) {
        throw new CliError(
          "no token: set SECRETS_TOKEN (or --token); against a dev-mode server: export SECRETS_TOKEN=$(secrets token)",
          EXIT.usage,
        );
      }
      const deadlineMs = Number(opts.timeout);
      if (!Number.isInteger(deadlineMs) || deadlineMs <= 0) throw new CliError("--timeout must be a positive number of milliseconds");
      // The SDK's address syntax; an https:// address turns TLS on, and --tls, --ca, --cert or --server-name ask for it too.
      if ((opts.cert === undefined) !== (opts.key === undefined)) throw new CliError("--cert and --key go together");
      const tls: TlsOptions | undefined =
        opts.ca || opts.cert || opts.serverName
          ? {
              ...(opts.ca ? { ca: opts.ca } : {}),
              ...(opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {}),
              ...(opts.serverName ? { serverName: opts.serverName } : {}),
            }
          : opts.tls === true
            ? true
            : undefined;
      try {
        client = new SecretsClient({ address: opts.addr, token: opts.token, tls, deadlineMs });
      } catch (e) {
        // A malformed address, or a scheme that contradicts --tls / --ca.
        if (e instanceof TypeError) throw new CliError(`--addr (SECRETS_ADDR): ${e.message.replace(/^SecretsClient: /, "")}`, EXIT.usage);
        throw e;
      }
      return client;
    },
    close() {
      client?.close();
      client = undefined;
    },
  };
}
