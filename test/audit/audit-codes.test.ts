/**
 * The codes of compact audit events: the service's list and the database's decoding
 * (migration 13) must agree forever, and every action the service records has one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CODED_ACTIONS, CODED_OUTCOMES, NAMED, actionCode, outcomeCode } from "../../src/audit/audit-codes.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { AUDIT_ACTIONS } from "../../src/audit/audit-service.js";
import { verifyAuditChains } from "../../src/audit/audit-verify.js";
import { listWriterEvents } from "../../src/store/audit-store.js";
import { auditEvent, newId } from "./audit-support.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

describe(`audit codes on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await createTestDb();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("decode in the database to the names the service coded", async () => {
    const { rows } = await t.db.query<{ code: number; action: string | null; outcome: string | null }>(
      "SELECT c AS code, audit_action_name(c::int2) AS action, audit_outcome_name(c::int2) AS outcome FROM generate_series(-1, 25) AS c",
    );
    const actions = new Map(rows.filter((r) => r.action !== null).map((r) => [r.action as string, r.code]));
    const outcomes = new Map(rows.filter((r) => r.outcome !== null).map((r) => [r.outcome as string, r.code]));
    expect(actions).toEqual(new Map(CODED_ACTIONS));
    expect(outcomes).toEqual(new Map(CODED_OUTCOMES));
  });

  it("cover every action the service records; anything else is stored by name", () => {
    for (const action of AUDIT_ACTIONS) expect(actionCode(action), action).toBeGreaterThan(0);
    expect(actionCode("SomeFutureRpc")).toBe(NAMED);
    expect(outcomeCode("OK")).toBe(0);
    expect(outcomeCode("NOT_A_STATUS")).toBe(NAMED);
  });

  it("store an uncoded action or outcome, a subject of its own and ids that are not UUIDs by name, readable and verifiable", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId });
    const e = auditEvent({
      developerId: newId("dev"),
      callerSubject: "operator-1",
      callerTokenId: "not-a-uuid",
      action: "SomeFutureRpc",
      outcome: "WEIRD",
      requestId: "0A0B0C0D-0000-4000-8000-000000000000",
    });
    await log.recordDurable(e);
    await log.close();
    const [row] = await listWriterEvents(t.db, writerId, 0, 10);
    expect(row).toMatchObject({ ...e, writerId, writerSequence: 1 });
    const { rows } = await t.db.query("SELECT action, outcome, action_name, outcome_name, request_uuid FROM audit_log WHERE id = $1", [row?.id]);
    expect(rows).toEqual([{ action: NAMED, outcome: NAMED, action_name: "SomeFutureRpc", outcome_name: "WEIRD", request_uuid: null }]);
    expect((await verifyAuditChains(t.db)).problems).toEqual([]);
  });
});
