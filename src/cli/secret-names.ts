import { RESOLVE_MAX_NAMES, type SecretsClient } from "@secrets-service/client";

/**
 * Whole-collection helpers for `import`, `export` and `run`: every name the token
 * can see (ListSecrets shows only allowlisted names), and the values of any number
 * of names in calls of at most 100.
 */

/** Every secret name the token can list, in name order. */
export async function listNames(client: SecretsClient, namePrefix = ""): Promise<string[]> {
  const names: string[] = [];
  for await (const s of client.secrets.list({ namePrefix, pageSize: 500 })) names.push(s.name);
  return names;
}

/** The current values of `names`, resolved 100 at a time. Fails as ResolveSecrets does if any is missing. */
export async function resolveAll(client: SecretsClient, names: readonly string[]): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  for (let i = 0; i < names.length; i += RESOLVE_MAX_NAMES) {
    const batch = names.slice(i, i + RESOLVE_MAX_NAMES);
    const resolved = await client.secrets.resolve(batch);
    for (const name of batch) {
      const value = resolved[name];
      if (value !== undefined) values.set(name, value);
    }
  }
  return values;
}
