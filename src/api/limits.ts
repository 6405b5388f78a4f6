/**
 * The API's input limits and naming rules (docs/api.md), written once in the SDK package's contract module and
 * enforced here by the service (secrets/validation.ts, auth, audit). The SDK and the CLI check against the same
 * module before they send.
 */
export { BEARER_TOKEN_PATTERN, LIMITS, NAME_PATTERN, NAME_PREFIX_PATTERN, SUBJECT_PATTERN } from "@secrets-service/client/contract";
