/**
 * A key provider whose master keys live in a PKCS#11 token: a hardware security module, a network or
 * cloud HSM's PKCS#11 module, or SoftHSM2 for development and tests (docs/design.md, Master keys in
 * an HSM). The keys never leave the token: data keys are sealed and opened inside it with
 * CKM_AES_GCM, under the same 96-bit random nonce, associated data (`wrappedKeyAad`) and wrapped-key
 * envelope (format 0x02) as the local provider, so a stored row reads the same whichever provider
 * wrapped it, and its master key id alone says which provider opens it.
 *
 * Sessions: a pool of at most `sessions`, one operation on a session at a time (PKCS#11 allows one
 * active operation per session). Encryption and decryption run on libuv's thread pool
 * (C_EncryptAsync / C_DecryptAsync), so the event loop does not wait on the token.
 *
 * Outages: when a call finds the token unusable (its session closed, the user logged out, the
 * device gone), that call and every call until the next reconnection attempt fail UNAVAILABLE
 * (BACKEND_UNAVAILABLE), never INTERNAL. The first call after a back-off (doubling up to a bound)
 * reconnects: a new session, a login, and the keys found again by label, since object handles do
 * not outlive a logout. There is no timer: the next call or health probe (each metrics scrape)
 * reconnects, so the pool recovers by itself.
 */
import { randomBytes as systemRandomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import pkcs11js from "pkcs11js";
import type { Handle, Mechanism, PKCS11 } from "pkcs11js";
import { AppError, integrityFailure } from "../api/errors.js";
import { wrappedKeyAad } from "./aad.js";
import { KEY_BYTES, NONCE_BYTES, TAG_BYTES } from "./aead.js";
import { parseWrappedKeyEnvelope, wrappedKeyHeader } from "./envelope.js";
import { KeyBytes } from "./key-bytes.js";
import type { KeyProvider } from "./key-provider.js";

/** The token to use: by its label (recommended: slot ids can change) or by slot id. */
export type TokenSelector = { label: string } | { slot: number };

export interface Pkcs11ProviderOptions {
  /** Path of the vendor's PKCS#11 module (a shared library). */
  modulePath: string;
  token: TokenSelector;
  /** The token's user PIN; the provider keeps its own copy and zeroizes it on destroy. */
  pin: KeyBytes;
  /** Master key id → the label of its AES-256 key object in the token. */
  keys: ReadonlyMap<string, string>;
  /** Most sessions open at once (default 4). */
  sessions?: number;
  /** The configuration variables, named in start-up errors (defaults: the SECRETS_PKCS11_* names). */
  variables?: Partial<Pkcs11Variables>;
  /** Told when the token becomes unusable and when it is usable again (for the log). */
  onOutage?: (event: "down" | "up", cause?: unknown) => void;
  /** Milliseconds before the first reconnection attempt after an outage, doubling up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Injectable for tests only. */
  randomBytes?: (n: number) => Buffer;
  now?: () => number;
}

/** Which variable each setting came from. */
export interface Pkcs11Variables {
  module: string;
  token: string;
  pin: string;
  keys: string;
}

/** The provider cannot start: the message is one line naming the variable to fix, never a value of a secret. */
export class Pkcs11SetupError extends Error {
  override readonly name = "Pkcs11SetupError";
}

const DEFAULT_VARIABLES: Pkcs11Variables = {
  module: "SECRETS_PKCS11_MODULE",
  token: "SECRETS_PKCS11_TOKEN_LABEL",
  pin: "SECRETS_PKCS11_PIN",
  keys: "SECRETS_PKCS11_KEYS",
};

/** The PKCS#11 return values that mean "the token cannot be used now", as opposed to a bad input. */
const UNAVAILABLE_CODES = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_COUNT,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

/**
 * The session states of a logged-in user: CKS_RO_USER_FUNCTIONS (1) and CKS_RW_USER_FUNCTIONS (3)
 * in the PKCS#11 specification; pkcs11js exports no CKS_* constants.
 */
const LOGGED_IN_STATES = new Set<number>([1, 3]);

/**
 * Creates the provider: loads the module, finds the token, logs in and finds every configured key,
 * checking that each is an AES-256 key that is sensitive and not extractable. Any failure is a
 * Pkcs11SetupError naming the variable to fix.
 */
export function createPkcs11KeyProvider(options: Pkcs11ProviderOptions): KeyProvider {
  const variables = { ...DEFAULT_VARIABLES, ...options.variables };
  const sessions = options.sessions ?? 4;
  if (!Number.isInteger(sessions) || sessions < 1) throw new Error("the PKCS#11 session pool needs at least one session");
  if (options.keys.size === 0) throw new Pkcs11SetupError(`${variables.keys} names no master key`);
  const keyLabels = new Map(options.keys);
  const pin = Buffer.from(options.pin.exposeSecretBytes());
  const randomBytes = options.randomBytes ?? systemRandomBytes;
  const now = options.now ?? (() => performance.now());
  const initialBackoffMs = options.backoffMs ?? 250;
  const maxBackoffMs = options.maxBackoffMs ?? 5_000;

  const lib = acquireModule(options.modulePath, variables);
  let opened: { slot: Handle; session: Handle; keyHandles: Map<string, Handle> };
  try {
    const slot = findSlot(lib, options.token, variables);
    opened = { slot, ...connect(lib, slot, pin, keyLabels, variables, "setup") };
  } catch (e) {
    pin.fill(0);
    releaseModule(options.modulePath);
    throw e;
  }
  /** Looked up again at each reconnection: a token can come back in another slot (slot ids are not stable). */
  let slot = opened.slot;
  /** The key handles of the current login; undefined while the token is unusable. */
  let keyHandles: Map<string, Handle> | undefined = opened.keyHandles;
  /** Sessions of the current login, free for the next operation. */
  const idle: Handle[] = [opened.session];

  /** Bumped at each reconnection: a session from an earlier one is closed, never reused. */
  let generation = 0;
  let destroyed = false;
  /** Operations running on the token; the module is let go only when none is (a call may be on a libuv thread). */
  let inFlight = 0;
  let released = false;
  const releaseWhenIdle = (): void => {
    if (!destroyed || inFlight > 0 || released) return;
    released = true;
    releaseModule(options.modulePath);
  };
  let retryAt = 0;
  let backoffMs = initialBackoffMs;
  let lastCause: unknown;
  let permits = sessions;
  const waiting: (() => void)[] = [];

  const takePermit = async (): Promise<void> => {
    if (permits > 0) {
      permits--;
      return;
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  };
  const givePermit = (): void => {
    const next = waiting.shift();
    if (next) next();
    else permits++;
  };

  function closeQuietly(session: Handle): void {
    try {
      lib.C_CloseSession(session);
    } catch {
      // Already closed (the token lost it) or the module is gone: nothing to release.
    }
  }

  function markDown(cause: unknown): void {
    if (keyHandles === undefined) return;
    keyHandles = undefined;
    generation++;
    for (const session of idle.splice(0)) closeQuietly(session);
    lastCause = cause;
    retryAt = now() + backoffMs;
    options.onOutage?.("down", cause);
  }

  /** The key handles of a usable login, reconnecting when the back-off has passed; else UNAVAILABLE. */
  function ready(): Map<string, Handle> {
    if (destroyed) throw unavailable("the key provider is closed");
    if (keyHandles !== undefined) return keyHandles;
    if (now() < retryAt) throw unavailable(lastCause);
    try {
      slot = findSlot(lib, options.token, variables);
      const fresh = connect(lib, slot, pin, keyLabels, variables, "reconnect");
      idle.push(fresh.session);
      keyHandles = fresh.keyHandles;
      backoffMs = initialBackoffMs;
      options.onOutage?.("up");
      return keyHandles;
    } catch (e) {
      lastCause = e;
      retryAt = now() + backoffMs;
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      throw unavailable(e);
    }
  }

  /**
   * Runs `op` on a pooled session of the current login. A session goes back to the pool after an
   * operation that failed on its input too (PKCS#11 ends a single-part operation that returns an
   * error), because closing a process's last session logs the token out, which would invalidate
   * every key handle; a failure that means the token is unusable marks the whole pool down.
   */
  async function withSession<T>(op: (session: Handle, keys: Map<string, Handle>) => Promise<T>): Promise<T> {
    await takePermit();
    try {
      const keys = ready();
      const mine = generation;
      let session = idle.pop();
      if (session === undefined) {
        try {
          session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
        } catch (e) {
          if (isUnavailable(e)) markDown(e);
          throw unavailable(e);
        }
      }
      let reusable = true;
      inFlight++;
      try {
        return await op(session, keys);
      } catch (e) {
        if (isUnavailable(e)) {
          reusable = false;
          markDown(e);
          throw unavailable(e);
        }
        throw e;
      } finally {
        inFlight--;
        if (reusable && mine === generation && !destroyed) idle.push(session);
        else closeQuietly(session);
        releaseWhenIdle();
      }
    } finally {
      givePermit();
    }
  }

  const requireKey = (keys: Map<string, Handle>, kekId: string): Handle => {
    const handle = keys.get(kekId);
    if (handle === undefined) throw new Error(`master key "${kekId}" is not in this replica's keyring`);
    return handle;
  };

  return {
    keyIds() {
      return Object.freeze([...keyLabels.keys()]);
    },

    has(kekId) {
      return keyLabels.has(kekId);
    },

    describe(kekId) {
      return keyLabels.has(kekId) ? { provider: "pkcs11" } : undefined;
    },

    async wrap(kekId, dek, context) {
      if (!keyLabels.has(kekId)) throw new Error(`master key "${kekId}" is not in this replica's keyring`);
      if (dek.length !== KEY_BYTES) throw new Error(`a data key must be ${KEY_BYTES} bytes`);
      const header = wrappedKeyHeader(kekId);
      const nonce = randomBytes(NONCE_BYTES);
      if (nonce.length !== NONCE_BYTES) throw new Error(`randomBytes returned ${nonce.length} bytes, expected ${NONCE_BYTES}`);
      const aad = wrappedKeyAad({ developerId: context.developerId, dekVersion: context.dekVersion, kekId, header });
      const sealed = await withSession(async (session, keys) => {
        lib.C_EncryptInit(session, gcm(nonce, aad), requireKey(keys, kekId));
        return lib.C_EncryptAsync(session, dek.exposeSecretBytes(), Buffer.alloc(KEY_BYTES + TAG_BYTES));
      });
      if (sealed.length !== KEY_BYTES + TAG_BYTES) throw new Error("the token returned a sealed data key of the wrong length");
      return Buffer.concat([header, nonce, sealed]);
    },

    async unwrap(kekId, wrapped, context) {
      const parsed = parseWrappedKeyEnvelope(wrapped);
      if (parsed.kekId !== kekId) throw integrityFailure("wrapped key: master key id differs from the row's");
      if (!keyLabels.has(kekId)) throw new Error(`master key "${kekId}" is not in this replica's keyring`);
      const aad = wrappedKeyAad({ developerId: context.developerId, dekVersion: context.dekVersion, kekId, header: parsed.header });
      const out = Buffer.alloc(parsed.sealed.length);
      try {
        const plain = await withSession(async (session, keys) => {
          lib.C_DecryptInit(session, gcm(parsed.nonce, aad), requireKey(keys, kekId));
          return lib.C_DecryptAsync(session, parsed.sealed, out);
        });
        if (plain.length !== KEY_BYTES) throw integrityFailure("wrapped key: wrong length");
        return KeyBytes.from(plain);
      } catch (e) {
        // A failed tag check is CKR_ENCRYPTED_DATA_INVALID, or CKR_GENERAL_ERROR from SoftHSM2.
        if (e instanceof AppError) throw e;
        throw integrityFailure("wrapped key", e);
      } finally {
        out.fill(0);
      }
    },

    async health() {
      try {
        await withSession(async (session) => {
          const info = lib.C_GetSessionInfo(session);
          if (!LOGGED_IN_STATES.has(info.state)) {
            throw new pkcs11js.Pkcs11Error("CKR_USER_NOT_LOGGED_IN", pkcs11js.CKR_USER_NOT_LOGGED_IN, "C_GetSessionInfo");
          }
        });
        return { ok: true };
      } catch (e) {
        return { ok: false, reason: reasonOf(e) };
      }
    },

    destroy() {
      if (destroyed) return;
      destroyed = true;
      keyHandles = undefined;
      for (const session of idle.splice(0)) closeQuietly(session);
      pin.fill(0);
      releaseWhenIdle();
    },
  };
}

/** CKM_AES_GCM with a 96-bit nonce, the associated data and a full 128-bit tag. */
function gcm(nonce: Buffer, aad: Buffer): Mechanism {
  return {
    mechanism: pkcs11js.CKM_AES_GCM,
    parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: nonce, ivBits: nonce.length * 8, aad, tagBits: TAG_BYTES * 8 } as pkcs11js.AesGCM,
  };
}

/** The error a caller sees while the token is unusable; the PKCS#11 return value stays in `cause`. */
function unavailable(cause: unknown): AppError {
  return new AppError("BACKEND_UNAVAILABLE", "the master key provider (HSM) is unavailable; retry shortly", { backend: "key_provider" }, { cause });
}

function codeOf(e: unknown): number | undefined {
  return e instanceof pkcs11js.Pkcs11Error ? e.code : undefined;
}

function isUnavailable(e: unknown): boolean {
  const code = codeOf(e);
  return code !== undefined && UNAVAILABLE_CODES.has(code);
}

/** The PKCS#11 return value's name (e.g. CKR_SESSION_HANDLE_INVALID), or a safe summary: never a PIN or a key. */
function reasonOf(e: unknown): string {
  const cause = e instanceof AppError ? e.cause : e;
  if (cause instanceof pkcs11js.Pkcs11Error) return cause.message.split(/\s/)[0] || `CKR ${cause.code}`;
  if (typeof cause === "string") return cause;
  return e instanceof AppError ? e.message : "unknown error";
}

/** One loaded module per path and process: PKCS#11 is initialized once per process and finalized by the last user. */
const modules = new Map<string, { lib: PKCS11; users: number; finalize: boolean }>();

function acquireModule(path: string, variables: Pkcs11Variables): PKCS11 {
  let loaded = modules.get(path);
  if (loaded === undefined) {
    const lib = new pkcs11js.PKCS11();
    try {
      lib.load(path);
    } catch {
      // The loader's message quotes the path; the variable is what the operator needs.
      throw new Pkcs11SetupError(`${variables.module} cannot be loaded as a PKCS#11 module: check the path and that it is the vendor's PKCS#11 library`);
    }
    let finalize = true;
    try {
      lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      // Another part of this process initialized it: it finalizes it too.
      if (codeOf(e) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        lib.close();
        throw new Pkcs11SetupError(`${variables.module} failed to initialize (${reasonOf(e)}): check the module's own configuration`);
      }
      finalize = false;
    }
    loaded = { lib, users: 0, finalize };
    modules.set(path, loaded);
  }
  loaded.users++;
  return loaded.lib;
}

function releaseModule(path: string): void {
  const loaded = modules.get(path);
  if (loaded === undefined || --loaded.users > 0) return;
  modules.delete(path);
  try {
    if (loaded.finalize) loaded.lib.C_Finalize();
    loaded.lib.close();
  } catch {
    // Shutting down: a module that fails to finalize holds nothing of ours.
  }
}

/** The numeric id of a slot handle (a CK_ULONG, little-endian on the platforms Node runs on). */
function slotId(handle: Handle): bigint {
  return handle.length >= 8 ? handle.readBigUInt64LE(0) : BigInt(handle.readUInt32LE(0));
}

function findSlot(lib: PKCS11, token: TokenSelector, variables: Pkcs11Variables): Handle {
  const slots = lib.C_GetSlotList(true);
  if ("slot" in token) {
    const found = slots.find((s) => slotId(s) === BigInt(token.slot));
    if (found === undefined) throw new Pkcs11SetupError(`${variables.token} names no slot with a token in the module: list them with the vendor's tool (softhsm2-util --show-slots)`);
    return found;
  }
  const matching = slots.filter((s) => lib.C_GetTokenInfo(s).label.trimEnd() === token.label);
  if (matching.length === 0) {
    throw new Pkcs11SetupError(`${variables.token} names no token in the module: check the label (softhsm2-util --show-slots lists them)`);
  }
  if (matching.length > 1) throw new Pkcs11SetupError(`${variables.token} names ${matching.length} tokens: give each token its own label, or set SECRETS_PKCS11_SLOT`);
  return matching[0] as Handle;
}

/**
 * Opens a session, logs in and finds every key by label. At setup a failure is a Pkcs11SetupError
 * naming the variable; on reconnection it is thrown as it is (the caller reports UNAVAILABLE).
 */
function connect(
  lib: PKCS11,
  slot: Handle,
  pin: Buffer,
  keyLabels: ReadonlyMap<string, string>,
  variables: Pkcs11Variables,
  when: "setup" | "reconnect",
): { session: Handle; keyHandles: Map<string, Handle> } {
  const session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    try {
      lib.C_Login(session, pkcs11js.CKU_USER, pin.toString("utf8"));
    } catch (e) {
      const code = codeOf(e);
      // Already logged in: a login belongs to the process, and another session of it holds one, so the
      // token does not check this PIN again (only possible with two providers on one token in a process).
      if (code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
        if (when === "reconnect") throw e;
        if (code === pkcs11js.CKR_PIN_INCORRECT) throw new Pkcs11SetupError(`${variables.pin} is not the token's user PIN (CKR_PIN_INCORRECT): set the right PIN`);
        if (code === pkcs11js.CKR_PIN_LOCKED) throw new Pkcs11SetupError(`${variables.pin}: the token's user PIN is locked (CKR_PIN_LOCKED): have the security officer reset it`);
        throw new Pkcs11SetupError(`${variables.pin}: logging in to the token failed (${reasonOf(e)})`);
      }
    }
    const keyHandles = new Map<string, Handle>();
    for (const [kekId, label] of keyLabels) {
      const handle = findKey(lib, session, kekId, label, variables, when);
      keyHandles.set(kekId, handle);
    }
    return { session, keyHandles };
  } catch (e) {
    try {
      lib.C_CloseSession(session);
    } catch {
      // The session is unusable anyway.
    }
    throw e;
  }
}

/** The one secret-key object labelled `label`, checked to be an AES-256 key that cannot leave the token. */
function findKey(lib: PKCS11, session: Handle, kekId: string, label: string, variables: Pkcs11Variables, when: "setup" | "reconnect"): Handle {
  lib.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  let found: Handle[];
  try {
    found = lib.C_FindObjects(session, 2);
  } finally {
    lib.C_FindObjectsFinal(session);
  }
  const refuse = (what: string): never => {
    const message = `${variables.keys}: master key "${kekId}" (label "${label}") ${what}`;
    if (when === "setup") throw new Pkcs11SetupError(message);
    throw new pkcs11js.Pkcs11Error(message, pkcs11js.CKR_KEY_HANDLE_INVALID, "C_FindObjects");
  };
  if (found.length === 0) return refuse("is not in the token: create it with `secrets keys hsm-init --label …` or fix the label");
  if (found.length > 1) return refuse("matches more than one key in the token: labels must be unique");
  const handle = found[0] as Handle;
  const [keyType, valueLen, sensitive, extractable, encrypt, decrypt] = lib
    .C_GetAttributeValue(session, handle, [
      { type: pkcs11js.CKA_KEY_TYPE },
      { type: pkcs11js.CKA_VALUE_LEN },
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_ENCRYPT },
      { type: pkcs11js.CKA_DECRYPT },
    ])
    .map((a) => readUnsigned(a.value));
  if (keyType !== pkcs11js.CKK_AES || valueLen !== KEY_BYTES) return refuse("is not an AES-256 key");
  if (sensitive !== 1 || extractable !== 0) return refuse("can be read out of the token (it must be sensitive and not extractable)");
  if (encrypt !== 1 || decrypt !== 1) return refuse("is not allowed to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)");
  return handle;
}

/** A CK_ULONG or CK_BBOOL attribute value (little-endian). */
function readUnsigned(value: Buffer): number {
  return value.length === 0 ? 0 : value.readUIntLE(0, Math.min(value.length, 6));
}
