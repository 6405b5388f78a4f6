import type { Queryable } from "../store/db.js";
import { AppError } from "../api/errors.js";
import * as store from "../store/secret-store.js";
import type * as versionStore from "../store/version-store.js";
import type { JsonObject } from "./validation.js";

/**
 * What the secret use cases (reads, writes, listing) share about a stored secret:
 * finding it or answering NOT_FOUND, and its rows as the API returns them.
 */

/** A secret's attributes as the API returns them; never its value. */
export interface Secret {
  id: string;
  name: string;
  description: string;
  metadata: JsonObject;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  createdBy: string;
  updatedBy: string;
  /** Set only for a secret in the recovery bin: when it was deleted, and when it will be purged. */
  deleteTime?: Date;
  purgeTime?: Date;
  /** When the secret expires; absent: never. */
  expireTime?: Date;
  /** The rotation schedule; absent: none. */
  rotation?: Rotation;
}

/** A rotation schedule as the API returns it. */
export interface Rotation {
  nextRotationTime: Date;
  periodSeconds: number;
  /** Set while a rotation is due: from its first RotationDue event until a new value is written. */
  dueTime?: Date;
}

export type VersionState = "enabled" | "destroyed";

export interface SecretVersion {
  version: number;
  state: VersionState;
  createdAt: Date;
  createdBy: string;
}

/** The secret named `name`, or SECRET_NOT_FOUND; `forUpdate` locks its row for the transaction. */
export async function mustFind(q: Queryable, developerId: string, name: string, forUpdate = false): Promise<store.SecretRow> {
  const row = await store.findSecret(q, developerId, name, { forUpdate });
  if (!row) throw notFound();
  return row;
}

export function notFound(): AppError {
  return new AppError("SECRET_NOT_FOUND", "secret not found", { field: "name" });
}

export function versionNotFound(version: number): AppError {
  return new AppError("VERSION_NOT_FOUND", "secret version not found", { version: String(version) });
}

export function toSecret(r: store.SecretRow): Secret {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    metadata: r.metadata as JsonObject,
    version: r.currentVersion,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    createdBy: r.createdBy,
    updatedBy: r.updatedBy,
    ...(r.deleteTime && r.purgeTime ? { deleteTime: r.deleteTime, purgeTime: r.purgeTime } : {}),
    ...(r.expireTime ? { expireTime: r.expireTime } : {}),
    ...(r.nextRotationTime && r.rotationPeriodSeconds !== null
      ? {
          rotation: {
            nextRotationTime: r.nextRotationTime,
            periodSeconds: r.rotationPeriodSeconds,
            ...(r.rotationDueTime ? { dueTime: r.rotationDueTime } : {}),
          },
        }
      : {}),
  };
}

export function toVersion(r: versionStore.VersionRow): SecretVersion {
  return { version: r.version, state: r.state, createdAt: r.createdAt, createdBy: r.createdBy };
}
