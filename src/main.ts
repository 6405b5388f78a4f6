/**
 * The service's entry point: configuration from the environment, start, and a
 * clean stop on SIGTERM / SIGINT. Everything else is wired in app/service.ts.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { ConfigError, loadConfig, type Config } from "./app/config.js";
import { devBanner, writeDevToken } from "./app/dev-mode.js";
import { startService, type RunningService } from "./app/service.js";
import { createLogger } from "./observability/logger.js";

export { createLogger } from "./observability/logger.js";
export { startService, type RunningService, type StartOptions } from "./app/service.js";

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`secrets: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  let service: RunningService;
  try {
    service = await startService(config, { log });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`secrets: ${e.message}\n`);
      process.exit(2);
    }
    log.fatal({ err: e }, "start-up failed");
    process.exit(1);
  }
  log.flush();
  if (service.devToken) {
    const tokenPath = writeDevToken(config.dataDir, service.devToken);
    const host = config.grpcAddr.slice(0, config.grpcAddr.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    process.stdout.write(`${devBanner(service.port, host, service.devToken, tokenPath)}\n`);
  }
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, "shutting down");
    service.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) void main();
