import { randomUUID } from "node:crypto";
import type { DescService, MessageShape } from "@bufbuild/protobuf";
import { AuditService } from "../api/gen/secrets/v1/audit_pb.js";
import { KeyService } from "../api/gen/secrets/v1/keys_pb.js";
import { SecretService } from "../api/gen/secrets/v1/secrets_pb.js";
import { SUBJECT_PATTERN } from "../api/limits.js";
import { auditSecretName, type AuditEventInput } from "./audit-event.js";

/**
 * What each audited RPC records (docs/design.md, Audit trail): one entry per method of
 * SecretService, KeyService and AuditService, saying how the call's decoded request
 * gives the secret names, version and target developer of its event. The transport's
 * audit step applies it to every call, failures included, so no handler has to
 * remember anything; a method without an entry fails the type check here and the
 * policy test.
 */

/** The secret names, version and target developer an audited call is about. */
export interface AuditSubject {
  readonly names: readonly string[];
  readonly version: number;
  /** The developer whose secrets, keys or trail are touched, when not the caller (operator calls). */
  readonly developerId?: string;
}

/** How one RPC is audited. */
export interface AuditRule {
  /** The event's action: the RPC's name. */
  readonly action: string;
  /** What the call is about, from its decoded request. */
  readonly subject: (request: unknown) => AuditSubject;
  /** The response carries secret values: with SECRETS_AUDIT_STRICT=1 it is sent only once the event is committed. */
  readonly returnsValues: boolean;
}

/** The rules of every audited method, keyed by its gRPC path (`/secrets.v1.SecretService/AccessSecret`). */
export type AuditPolicy = ReadonlyMap<string, AuditRule>;

/** What a call is about when nothing is named, or when its request did not decode: the caller's own trail. */
export const NO_SUBJECT: AuditSubject = Object.freeze({ names: Object.freeze([]), version: 0 });

type Entry<Request> = { subject: (request: Request) => AuditSubject; returnsValues?: true };
type Entries<S extends DescService> = { [K in keyof S["method"]]: Entry<MessageShape<S["method"][K]["input"]>> };

const named = (name: string, version = 0): AuditSubject => ({ names: [name], version });

/**
 * A call about another developer is recorded in that developer's trail (an operator's
 * key call, a read of someone's audit trail); an id that breaks the subject rule is not
 * recorded, and the event goes to the caller's trail.
 */
function about(developerId: string, names: readonly string[] = []): AuditSubject {
  return SUBJECT_PATTERN.test(developerId) ? { names, version: 0, developerId } : { names, version: 0 };
}

const secretEntries: Entries<typeof SecretService> = {
  createSecret: { subject: (r) => named(r.name) },
  getSecret: { subject: (r) => named(r.name) },
  listSecrets: { subject: () => NO_SUBJECT },
  updateSecret: { subject: (r) => named(r.name, r.expectedVersion) },
  deleteSecret: { subject: (r) => named(r.name, r.expectedVersion) },
  accessSecret: { subject: (r) => named(r.name, r.version), returnsValues: true },
  listSecretVersions: { subject: (r) => named(r.name) },
  destroySecretVersion: { subject: (r) => named(r.name, r.version) },
  resolveSecrets: { subject: (r) => ({ names: r.names, version: 0 }), returnsValues: true },
  // By id the request names no secret; the event then carries none.
  restoreSecret: { subject: (r) => (r.name === "" ? NO_SUBJECT : named(r.name)) },
};

const keyEntries: Entries<typeof KeyService> = {
  rotateMasterKey: { subject: () => NO_SUBJECT },
  rotateDeveloperKey: { subject: (r) => about(r.developerId) },
  shredDeveloper: { subject: (r) => about(r.developerId) },
  getKeyStatus: { subject: (r) => about(r.developerId) },
};

const auditEntries: Entries<typeof AuditService> = {
  // Recorded in the trail it reads, with the secret name it filtered on.
  listAuditEvents: { subject: (r) => about(r.developerId, r.secretName === "" ? [] : [r.secretName]) },
};

/**
 * The actions of the lifecycle job's events (secrets/lifecycle-jobs.ts): not RPCs, so
 * that no call can be mistaken for one. Each has its own caller subject in
 * parentheses, which can never be a token's `sub`.
 */
export const LIFECYCLE_ACTIONS = {
  /** An expired secret moved to the recovery bin. */
  expired: { action: "ExpireSecret", subject: "(expiry)" },
  /** A rotation schedule's time passed (the ROTATION_DUE event). */
  rotationDue: { action: "RotationDue", subject: "(rotation)" },
  /** A binned secret purged after its recovery window. */
  purged: { action: "PurgeSecret", subject: "(purge)" },
} as const;

/** The secret a lifecycle event is about. */
export interface LifecycleSubject {
  developerId: string;
  name: string;
  version: number;
}

/**
 * The event of a change the lifecycle job made: no caller token; the identity names
 * the replica that made it.
 */
export function lifecycleAuditEvent(
  kind: keyof typeof LIFECYCLE_ACTIONS,
  row: LifecycleSubject,
  replicaId: string,
  time: Date,
): AuditEventInput {
  const { action, subject } = LIFECYCLE_ACTIONS[kind];
  return {
    time,
    developerId: row.developerId,
    callerSubject: subject,
    callerTokenId: "",
    callerIdentity: `replica:${replicaId}`,
    action,
    secretName: auditSecretName([row.name]),
    version: row.version,
    outcome: "OK",
    requestId: randomUUID(),
    peer: "",
  };
}

/** The audit policy of the service. */
export const auditPolicy: AuditPolicy = new Map([
  ...rulesOf(SecretService, secretEntries),
  ...rulesOf(KeyService, keyEntries),
  ...rulesOf(AuditService, auditEntries),
]);

function rulesOf<S extends DescService>(service: S, entries: Entries<S>): [string, AuditRule][] {
  const byName = entries as unknown as Partial<Record<string, Entry<never>>>;
  return service.methods.map((method) => {
    const entry = byName[method.localName];
    if (!entry) throw new Error(`no audit rule for ${service.typeName}/${method.name}`);
    const rule: AuditRule = {
      action: method.name,
      subject: entry.subject as (request: unknown) => AuditSubject,
      returnsValues: entry.returnsValues === true,
    };
    return [`/${service.typeName}/${method.name}`, rule];
  });
}
