/**
 * Server environment for fault and load tests. The per-developer rate limits
 * (SECRETS_READ_RATE / SECRETS_WRITE_RATE, 0 = off) are not what these tests are
 * about, so they are turned off: a RESOURCE_EXHAUSTED can then never be what
 * refuses a call under load.
 */
export const NO_RATE_LIMITS: Readonly<Record<string, string>> = { SECRETS_READ_RATE: "0", SECRETS_WRITE_RATE: "0" };
