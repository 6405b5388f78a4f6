import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { ChannelOptions } from "@grpc/grpc-js";
import { SecretService } from "./gen/secrets/v1/secrets_pb.js";
import { secretOf, versionOf } from "./convert.js";
import { RESOLVE_MAX_NAMES } from "./limits.js";
import { retryPolicy, withRetries, type RetryOptions, type RetryPolicy } from "./retry.js";
import { createTransport, type TlsOptions, type TokenSource, type Transport } from "./transport.js";
import type {
  AccessedSecret,
  CallOptions,
  CreateSecretInput,
  ListSecretsOptions,
  Secret,
  SecretVersion,
  UpdateSecretInput,
} from "./types.js";
import { createValueCache, type CacheOptions, type ValueCache } from "./value-cache.js";

/**
 * The SDK's entry point: `secrets.v1.SecretService` as plain async functions.
 *
 * Every call has a deadline (default 10 s, retries included). Calls that only read
 * (get, list pages, access, versions pages, resolve) are retried on UNAVAILABLE with
 * backoff and jitter; calls that write (create, update, delete, destroyVersion) never
 * are, since a lost answer does not say whether the write happened. Failures are
 * SecretsError (see errors.ts). The optional cache (see value-cache.ts) serves
 * `access` of the current version and `resolve`.
 */

/** How to reach and call the service. */
export interface SecretsClientOptions {
  /** `host:port`, e.g. "127.0.0.1:50051". */
  address: string;
  /** A bearer token (JWT), or a function returning one, called before every attempt (for refreshing tokens). */
  token: TokenSource;
  /** TLS (default off: plaintext, for loopback or a mesh that provides mTLS). */
  tls?: TlsOptions;
  /** The deadline of every call, retries included (default 10,000 ms). */
  deadlineMs?: number;
  /** Retries of idempotent calls on UNAVAILABLE. */
  retry?: RetryOptions;
  /** Turns the client cache on for `access` (current version) and `resolve`. */
  cache?: CacheOptions;
  /** Extra grpc-js channel options (rarely needed). */
  channelOptions?: ChannelOptions;
}

/** The calls of SecretService, with plain objects in and out. */
export interface SecretsApi {
  /** Creates a secret at version 1; ALREADY_EXISTS (SECRET_EXISTS) if the name is taken. Never retried. */
  create(input: CreateSecretInput, options?: CallOptions): Promise<Secret>;
  /** A secret's attributes (never its value). */
  get(name: string, options?: CallOptions): Promise<Secret>;
  /** Every secret that matches, by name, fetching page after page as the iteration goes. */
  list(filter?: ListSecretsOptions, options?: CallOptions): AsyncIterable<Secret>;
  /** Changes value, description or metadata; only a new value makes a new version. Never retried. */
  update(name: string, input: UpdateSecretInput, options?: CallOptions): Promise<Secret>;
  /** Removes the secret and all its versions. Never retried. */
  delete(name: string, input?: { expectedVersion?: number }, options?: CallOptions): Promise<void>;
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
}

const DEFAULT_DEADLINE_MS = 10_000;

type Methods = (typeof SecretService)["method"];

/** A client of the secrets service; one channel, shared by all its calls. Call `close()` when done. */
export class SecretsClient {
  /** The SecretService calls. */
  readonly secrets: SecretsApi;
  readonly #transport: Transport;
  readonly #deadlineMs: number;
  readonly #retry: RetryPolicy;
  readonly #cache: ValueCache | undefined;

  constructor(options: SecretsClientOptions) {
    if (!options.address) throw new TypeError("SecretsClient: address is required");
    if (!options.token) throw new TypeError("SecretsClient: token is required");
    this.#deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (!(this.#deadlineMs > 0)) throw new RangeError("SecretsClient: deadlineMs must be positive");
    this.#retry = retryPolicy(options.retry);
    this.#cache = options.cache ? createValueCache(options.cache) : undefined;
    this.#transport = createTransport({
      address: options.address,
      token: options.token,
      tls: options.tls,
      channelOptions: options.channelOptions,
    });
    this.secrets = this.#api();
  }

  /** Closes the channel; calls made afterwards fail. */
  close(): void {
    this.#cache?.clear();
    this.#transport.close();
  }

  /** One call: an idempotent one is retried on UNAVAILABLE within its deadline. */
  #call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    idempotent: boolean,
    options: CallOptions | undefined,
  ): Promise<MessageShape<O>> {
    const deadline = Date.now() + (options?.deadlineMs ?? this.#deadlineMs);
    const attempt = () => this.#transport.unary(method, request, { deadline, signal: options?.signal });
    if (!idempotent) return attempt();
    return withRetries(this.#retry, deadline, options?.signal, attempt);
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

    async function* pages<T>(fetch: (pageToken: string) => Promise<{ items: T[]; next: string }>): AsyncGenerator<T> {
      let pageToken = "";
      do {
        const page = await fetch(pageToken);
        yield* page.items;
        pageToken = page.next;
      } while (pageToken !== "");
    }

    const fetchAccess = (name: string, version: number, options: CallOptions | undefined) =>
      client.#call(m.accessSecret, { name, version }, true, options).then((r) => ({ name: r.name, version: r.version, value: r.value }));

    const fetchResolve = (names: readonly string[], options: CallOptions | undefined) =>
      client.#call(m.resolveSecrets, { names: [...names] }, true, options).then((r) => ({ ...r.values }));

    return {
      async create(input, options) {
        const r = await client.#write(input.name, m.createSecret, { ...input }, options);
        return secretOf(r.secret);
      },
      async get(name, options) {
        return secretOf((await client.#call(m.getSecret, { name }, true, options)).secret);
      },
      list(filter = {}, options) {
        return pages(async (pageToken) => {
          const r = await client.#call(
            m.listSecrets,
            { pageToken, pageSize: filter.pageSize ?? 0, namePrefix: filter.namePrefix ?? "", metadataFilter: filter.metadataFilter },
            true,
            options,
          );
          return { items: r.secrets.map(secretOf), next: r.nextPageToken };
        });
      },
      async update(name, input, options) {
        const r = await client.#write(
          name,
          m.updateSecret,
          {
            name,
            value: input.value,
            description: input.description,
            metadata: input.metadata,
            expectedVersion: input.expectedVersion ?? 0,
          },
          options,
        );
        return secretOf(r.secret);
      },
      async delete(name, input = {}, options) {
        await client.#write(name, m.deleteSecret, { name, expectedVersion: input.expectedVersion ?? 0 }, options);
      },
      access(name, input = {}, options) {
        const version = input.version ?? 0;
        const cache = client.#cache;
        if (!cache || version !== 0) return fetchAccess(name, version, options);
        return cache.access(name, () => fetchAccess(name, 0, options));
      },
      versions(name, options) {
        return pages(async (pageToken) => {
          const r = await client.#call(m.listSecretVersions, { name, pageToken, pageSize: options?.pageSize ?? 0 }, true, options);
          return { items: r.versions.map(versionOf), next: r.nextPageToken };
        });
      },
      async destroyVersion(name, version, options) {
        return versionOf((await client.#write(name, m.destroySecretVersion, { name, version }, options)).version);
      },
      resolve(names, options) {
        const cache = client.#cache;
        // Outside 1..100 distinct names the service's own INVALID_ARGUMENT is the answer, cache or not.
        const distinct = new Set(names).size;
        if (!cache || distinct === 0 || distinct > RESOLVE_MAX_NAMES) return fetchResolve(names, options);
        return cache.resolve(names, (missing) => fetchResolve(missing, options));
      },
    };
  }
}
