import type { Logger } from "pino";
import { combineKeyProviders, createLocalKeyProvider, parseKeyring, type KeyProvider } from "../crypto/key-provider.js";
import { ConfigError, type Config } from "./config.js";

/**
 * The master-key providers the configuration names, as one KeyProvider: the keyring held in this
 * process (`keyringText`: SECRETS_MASTER_KEYS / _FILE, or dev mode's generated key) and the keys in
 * a PKCS#11 token (SECRETS_PKCS11_*), either or both. Keyring ids come first, so an empty database
 * records the keyring's first key as active when both are set. Every problem, the token's
 * included (module not loadable, wrong PIN, a label missing), is a one-line ConfigError. The
 * PKCS#11 binding (a native addon) is loaded only when SECRETS_PKCS11_* is set.
 */
export async function createKeyProviders(config: Config, keyringText: string | undefined, log: Logger): Promise<KeyProvider> {
  const providers: KeyProvider[] = [];
  try {
    if (keyringText) {
      let keyring;
      try {
        keyring = parseKeyring(keyringText);
      } catch (e) {
        throw new ConfigError(`${config.masterKeysSource}: ${(e as Error).message}`);
      }
      providers.push(createLocalKeyProvider(keyring));
      for (const key of keyring.values()) key.zeroize();
    }
    const p = config.pkcs11;
    if (p) {
      const { createPkcs11KeyProvider, Pkcs11SetupError } = await import("../crypto/pkcs11-provider.js");
      try {
        providers.push(
          createPkcs11KeyProvider({
            modulePath: p.modulePath,
            token: p.token,
            pin: p.pin,
            keys: p.keys,
            sessions: p.sessions,
            variables: { token: p.tokenSource, pin: p.pinSource },
            onOutage: (event, cause) =>
              event === "down"
                ? log.warn({ err: cause }, "HSM unusable: data key cache misses and new data keys fail UNAVAILABLE until it is back")
                : log.info("HSM usable again"),
          }),
        );
      } catch (e) {
        if (e instanceof Pkcs11SetupError) throw new ConfigError(e.message);
        throw e;
      }
    }
    if (providers.length === 0) throw new ConfigError(`${config.masterKeysSource} or SECRETS_PKCS11_KEYS is required`);
    try {
      return combineKeyProviders(providers);
    } catch (e) {
      throw new ConfigError(`${config.masterKeysSource} and SECRETS_PKCS11_KEYS: ${(e as Error).message}`);
    }
  } catch (e) {
    for (const provider of providers) provider.destroy();
    throw e;
  }
}
