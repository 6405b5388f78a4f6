import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { ChannelOptions } from "@grpc/grpc-js";
import { parseAddress, type ServiceAddress } from "./address.js";
import { secretOf, versionOf } from "./convert.js";
import { asSecretsError } from "./errors.js";
import { SecretService } from "./gen/secrets/v1/secrets_pb.js";
import { RESOLVE_MAX_NAMES } from "./limits.js";
import { retryPolicy, withRetries, type RetryOptions, type RetryPolicy } from "./retry.js";
import { checkToken, createTokenScopes, readToken, type TokenSource } from "./token.js";
import { createTransport, type TlsOptions, type Transport } from "./transport.js";
import { createAuditApi, type AuditApi } from "./audit-api.js";
import { createKeyApi, type KeyApi } from "./key-api.js";
import { createRequest, deleteRequest, listRequest, restoreRequest, updateRequest } from "./requests.js";
import { pages, type UnaryCall } from "./unary-call.js";
import type {
  AccessedSecret,
  CallOptions,
  CreateSecretInput,
  DeleteSecretInput,
  ListSecretsOptions,
  RestoreTarget,
  Secret,
  SecretVersion,
  UpdateSecretInput,
  WatchOptions,
  WatchTarget,
  WatchUpdate,
} from "./types.js";
import { createValueCache, type CacheOptions, type Caller, type ValueCache } from "./value-cache.js";
import { openWatch, resumableWatch, watchRequest } from "./watch.js";
import { createWatchedCache } from "./watched-cache.js";

/**
 * The SDK's entry point: `secrets.v1.SecretService` as plain async functions, with
 * KeyService as `keys` (key-api.ts) and AuditService as `audit` (audit-api.ts).
 *
 * Every call has a deadline (default 10 s, retries included). Calls that only read
 * (get, list pages, access, versions pages, resolve) are retried on UNAVAILABLE with
 * backoff and jitter; calls that write (create, update, delete, restore, destroyVersion) never
 * are, since a lost answer does not say whether the write happened. Every failure
 * a call reports is a SecretsError (see errors.ts); anything else thrown inside the
 * SDK is replaced by one with a fixed message. The optional cache (a TTL, see
 * value-cache.ts, or kept fresh by a watch, see watched-cache.ts) serves `access` of
 * the current version and `resolve`, partitioned by the token each lookup is made with.
 */

/** How to reach and call the service. */
export interface SecretsClientOptions {
  /**
   * `host:port`, `http://host:port` (plaintext), `https://host:port` (TLS), `host` (port 50051) or
   * `[ipv6]:port` (see address.ts); e.g. "127.0.0.1:50051".
   */
  address: string;
  /**
   * A bearer token (JWT), or a function returning one, called before every attempt (for refreshing tokens);
   * trimmed of surrounding whitespace. A cached lookup reads it once and uses it for all its attempts.
   */
  token: TokenSource;
  /** TLS (default off: plaintext, for loopback or a mesh that provides mTLS; on for an https:// address). */
  tls?: TlsOptions;
  /** The deadline of every call, retries included (default 10,000 ms). */
  deadlineMs?: number;
  /** Retries of idempotent calls on UNAVAILABLE. */
  retry?: RetryOptions;
  /**
   * Turns the client cache on for `access` (current version) and `resolve`: `{ ttlMs, … }` keeps
   * values for a TTL; `"watched"` keeps them until a WatchSecrets stream reports a change (README, Cache).
   */
  cache?: CacheOptions | "watched";
  /** Extra grpc-js channel options (rarely needed). */
  channelOptions?: ChannelOptions;
}

/** The calls of SecretService, with plain objects in and out. */
export interface SecretsApi {
  /**
   * Creates a secret at version 1, with an expiry and a rotation schedule if given;
   * ALREADY_EXISTS (SECRET_EXISTS) if the name is taken. Never retried.
   */
  create(input: CreateSecretInput, options?: CallOptions): Promise<Secret>;
  /** A secret's attributes (never its value). */
  get(name: string, options?: CallOptions): Promise<Secret>;
  /**
   * Every secret that matches, by name, fetching page after page as the iteration goes;
   * with `deleted: true`, the secrets in the recovery bin instead (by name, then id).
   */
  list(filter?: ListSecretsOptions, options?: CallOptions): AsyncIterable<Secret>;
  /**
   * Changes value, description, metadata, expiry or rotation schedule (`null` removes
   * the last two); only a new value makes a new version. Never retried.
   */
  update(name: string, input: UpdateSecretInput, options?: CallOptions): Promise<Secret>;
  /**
   * Moves the secret and all its versions to the recovery bin, for `recoveryWindowDays`
   * or the service's default; the name is free at once. `force: true` erases it at once
   * instead. Never retried.
   */
  delete(name: string, input?: DeleteSecretInput, options?: CallOptions): Promise<void>;
  /**
   * Brings a secret back from the recovery bin with all its versions: by name (the most
   * recently deleted of that name) or by id. ALREADY_EXISTS (RESTORE_NAME_TAKEN) while a
   * live secret holds the name; NOT_FOUND (SECRET_NOT_FOUND) once purged. Never retried.
   */
  restore(target: RestoreTarget, options?: CallOptions): Promise<Secret>;
  /** A version's value; the current one when `version` is 0 or absent (the only case the cache serves). */
  access(name: string, input?: { version?: number }, options?: CallOptions): Promise<AccessedSecret>;
  /** Every version of a secret, newest first, page after page. */
  versions(name: string, options?: CallOptions & { pageSize?: number }): AsyncIterable<SecretVersion>;
  /** Removes an old version's ciphertext (for a leaked value); the current version cannot be destroyed. Never retried. */
  destroyVersion(name: string, version: number, options?: CallOptions): Promise<SecretVersion>;
  /**
   * The current values of 1 to 100 names in one call, as `{ name: value }`. If any
   * is missing it fails NOT_FOUND (SECRET_NOT_FOUND) with every missing name in
   * `metadata.names`, and returns nothing.
   */
  resolve(names: readonly string[], options?: CallOptions): Promise<Record<string, string>>;
  /**
   * Follows changes to some secrets (names and versions, never values): a snapshot, then events as
   * they commit (WatchUpdate). Reconnects by itself on UNAVAILABLE, with backoff and jitter, resuming
   * after the last revision it saw, so no event is lost, repeated or reordered; when the service can no
   * longer resume it, it yields a new snapshot. Any other failure ends the iteration with a SecretsError.
   * `names` must hold 1 to 100 names, else a TypeError.
   */
  watch(target: WatchTarget, options?: WatchOptions): AsyncGenerator<WatchUpdate, void, undefined>;
}

const DEFAULT_DEADLINE_MS = 10_000;

type Methods = (typeof SecretService)["method"];

/** A client of the secrets service; one channel, shared by all its calls. Call `close()` when done. */
export class SecretsClient {
  /** The SecretService calls. */
  readonly secrets: SecretsApi;
  /** The KeyService calls (key status, rotations, shredding): for key holders and operators. */
  readonly keys: KeyApi;
  /** The AuditService calls: the audit trail, newest first. */
  readonly audit: AuditApi;
  /** The address dialled, as `host:port`. */
  readonly target: string;
  readonly #transport: Transport;
  readonly #token: TokenSource;
  readonly #scopes = createTokenScopes();
  readonly #deadlineMs: number;
  readonly #retry: RetryPolicy;
  readonly #cache: ValueCache | undefined;
  /** The caller of every lookup when the token is a fixed string (so a cache hit needs no await); else undefined. */
  readonly #fixedCaller: Caller | undefined;
  /** Aborted by close(), which ends every watch still open. */
  readonly #closing = new AbortController();

  constructor(options: SecretsClientOptions) {
    if (!options.address) throw new TypeError("SecretsClient: address is required");
    if (!options.token) throw new TypeError("SecretsClient: token is required");
    const address = parseAddress(options.address);
    this.target = address.target;
    this.#token = options.token;
    this.#deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (!(this.#deadlineMs > 0)) throw new RangeError("SecretsClient: deadlineMs must be positive");
    this.#retry = retryPolicy(options.retry);
    this.#fixedCaller = fixedCaller(options.token, this.#scopes);
    const transport = createTransport({
      address,
      token: options.token,
      tls: tlsOf(address, options.tls),
      channelOptions: options.channelOptions,
    });
    this.#transport = transport;
    if (options.cache === "watched") {
      const everything = { names: [], namePrefix: "", startRevision: 0 };
      this.#cache = createWatchedCache({ open: (token, signal) => openWatch(transport, everything, { token, signal }), policy: this.#retry });
    } else {
      this.#cache = options.cache ? createValueCache(options.cache) : undefined;
    }
    this.secrets = this.#api();
    const call: UnaryCall = (method, request, idempotent, options) => this.#call(method, request, idempotent, options);
    this.keys = createKeyApi(call);
    this.audit = createAuditApi(call);
  }

  /**
   * Closes the channel and ends its watches (an open watch keeps the process running; one being
   * iterated fails CANCELLED); calls made afterwards fail.
   */
  close(): void {
    this.#closing.abort();
    this.#cache?.clear();
    this.#transport.close();
  }

  /**
   * One call: an idempotent one is retried on UNAVAILABLE within its deadline. `token`
   * pins the token for every attempt (cached lookups, whose entries belong to it).
   */
  #call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    idempotent: boolean,
    options: CallOptions | undefined,
    token?: string,
  ): Promise<MessageShape<O>> {
    const deadlineMs = options?.deadlineMs ?? this.#deadlineMs;
    const deadline = Date.now() + deadlineMs;
    const attempt = () => this.#transport.unary(method, request, { deadline, deadlineMs, signal: options?.signal, token });
    return boundary(idempotent ? withRetries(this.#retry, deadline, options?.signal, attempt) : attempt());
  }

  /** The token for a cached lookup, and the cache partition it selects. */
  async #caller(): Promise<Caller> {
    const token = await readToken(this.#token);
    return { token, scope: this.#scopes(token) };
  }

  /** A write: never retried; the name leaves the cache whatever the outcome (a failed write may have happened). */
  async #write<I extends DescMessage, O extends DescMessage>(
    name: string,
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options: CallOptions | undefined,
  ): Promise<MessageShape<O>> {
    try {
      return await this.#call(method, request, false, options);
    } finally {
      this.#cache?.invalidate(name);
    }
  }

  #api(): SecretsApi {
    const m: Methods = SecretService.method;
    const client = this;

    const fetchAccess = (name: string, version: number, options: CallOptions | undefined, token?: string) =>
      client.#call(m.accessSecret, { name, version }, true, options, token).then((r) => ({ name: r.name, version: r.version, value: r.value }));

    const fetchResolve = (names: readonly string[], options: CallOptions | undefined, token?: string) =>
      client.#call(m.resolveSecrets, { names: [...names] }, true, options, token).then((r) => ({ ...r.values }));

    return {
      create(input, options) {
        return guarded(() => client.#write(input.name, m.createSecret, createRequest(input), options).then((r) => secretOf(r.secret)));
      },
      get(name, options) {
        return boundary(client.#call(m.getSecret, { name }, true, options).then((r) => secretOf(r.secret)));
      },
      list(filter = {}, options) {
        return pages(async (pageToken) => {
          const r = await client.#call(m.listSecrets, listRequest(filter, pageToken), true, options);
          return { items: r.secrets.map(secretOf), next: r.nextPageToken };
        });
      },
      update(name, input, options) {
        return guarded(() => client.#write(name, m.updateSecret, updateRequest(name, input), options).then((r) => secretOf(r.secret)));
      },
      delete(name, input = {}, options) {
        return guarded(async () => {
          await client.#write(name, m.deleteSecret, deleteRequest(name, input), options);
        });
      },
      restore(target, options) {
        return guarded(async () => {
          // As #write, but by id the name is known only from the answer; a restore by id whose
          // answer was lost leaves the cache to its TTL.
          try {
            const secret = secretOf((await client.#call(m.restoreSecret, restoreRequest(target), false, options)).secret);
            client.#cache?.invalidate(secret.name);
            return secret;
          } finally {
            if (target.name !== undefined) client.#cache?.invalidate(target.name);
          }
        });
      },
      access(name, input = {}, options) {
        const version = input.version ?? 0;
        const cache = client.#cache;
        if (!cache || version !== 0) return boundary(fetchAccess(name, version, options));
        const hit = client.#fixedCaller && cache.peek(client.#fixedCaller, name);
        if (hit) return hit;
        return boundary(client.#caller().then((caller) => cache.access(caller, name, () => fetchAccess(name, 0, options, caller.token))));
      },
      versions(name, options) {
        return pages(async (pageToken) => {
          const r = await client.#call(m.listSecretVersions, { name, pageToken, pageSize: options?.pageSize ?? 0 }, true, options);
          return { items: r.versions.map(versionOf), next: r.nextPageToken };
        });
      },
      destroyVersion(name, version, options) {
        return boundary(client.#write(name, m.destroySecretVersion, { name, version }, options).then((r) => versionOf(r.version)));
      },
      resolve(names, options) {
        const cache = client.#cache;
        // Outside 1..100 distinct names the service's own INVALID_ARGUMENT is the answer, cache or not.
        const distinct = new Set(names).size;
        if (!cache || distinct === 0 || distinct > RESOLVE_MAX_NAMES) return boundary(fetchResolve(names, options));
        return boundary(client.#caller().then((caller) => cache.resolve(caller, names, (missing) => fetchResolve(missing, options, caller.token))));
      },
      watch(target, options = {}) {
        const request = watchRequest(target, options.fromRevision ?? 0);
        const open = (startRevision: number, signal: AbortSignal | undefined) => openWatch(client.#transport, { ...request, startRevision }, { signal });
        const signal = options.signal ? AbortSignal.any([options.signal, client.#closing.signal]) : client.#closing.signal;
        return guardedStream(resumableWatch(open, request.startRevision, { signal, onRetry: options.onRetry }, client.#retry));
      },
    };
  }
}

/** The caller a fixed token string makes, or undefined for a token function or an unusable token (which the first call reports). */
function fixedCaller(source: TokenSource, scopes: (token: string) => string): Caller | undefined {
  if (typeof source !== "string") return undefined;
  try {
    const token = checkToken(source);
    return { token, scope: scopes(token) };
  } catch {
    return undefined;
  }
}

/** TLS from the options and the address's scheme; a scheme that contradicts the options is a TypeError. */
function tlsOf(address: ServiceAddress, tls: TlsOptions | undefined): TlsOptions {
  if (address.tls === true) {
    if (tls === false) throw new TypeError("SecretsClient: an https:// address uses TLS; remove tls: false or use http://");
    return tls ?? true;
  }
  if (address.tls === false) {
    if (tls) throw new TypeError("SecretsClient: an http:// address is plaintext; use https:// for TLS");
    return false;
  }
  return tls ?? false;
}

/** `fn` behind the error boundary, a synchronous throw included (a request that cannot be built). */
function guarded<T>(fn: () => Promise<T>): Promise<T> {
  return boundary(new Promise<T>((resolve) => resolve(fn())));
}

/** The SDK's error boundary (asSecretsError) around a stream's items. */
async function* guardedStream<T>(items: AsyncGenerator<T, void, undefined>): AsyncGenerator<T, void, undefined> {
  try {
    yield* items;
  } catch (e) {
    throw asSecretsError(e);
  }
}

/** The SDK's error boundary (asSecretsError) around a call. */
function boundary<T>(promise: Promise<T>): Promise<T> {
  return promise.catch((e: unknown) => {
    throw asSecretsError(e);
  });
}
