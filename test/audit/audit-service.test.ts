/**
 * ListAuditEvents as a use case, on a real database: who may read whose events,
 * the filters, pagination, and invalid input. Events are written through the audit
 * log, as the service writes them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Principal, Scope } from "../../src/auth/principal.js";
import { AppError } from "../../src/api/errors.js";
import type { AuditEventInput } from "../../src/audit/audit-event.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { createAuditService, type AuditEvent, type AuditListInput, type AuditService } from "../../src/audit/audit-service.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, newId, writeOldFormatChain } from "./audit-support.js";

function principal(developerId: string, scopes: Scope[], allowlist: string[] | null = null): Principal {
  return {
    developerId,
    scopes: new Set(scopes),
    allowlist: allowlist === null ? null : new Set(allowlist),
    tokenId: undefined,
    expiresAt: Math.floor(Date.now() / 1000) + 600,
  };
}

const NO_FILTER: AuditListInput = {
  developerId: "",
  secretName: "",
  action: "",
  outcome: "",
  startTime: undefined,
  endTime: undefined,
  pageSize: 0,
  pageToken: "",
};

async function appError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected an AppError, and the call succeeded");
}

const T0 = Date.parse("2030-03-01T12:00:00.000Z");
const minute = (n: number) => new Date(T0 + n * 60_000);

describe(`ListAuditEvents on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let service: AuditService;
  const alice = newId("alice");
  const bob = newId("bob");
  const many = newId("many");
  let aliceEvents: AuditEventInput[];
  let bobEvents: AuditEventInput[];

  /** Request ids of listed events, to compare with what was written. */
  const ids = (events: AuditEvent[]) => events.map((e) => e.requestId);
  const newestFirst = (events: AuditEventInput[]) => [...events].reverse().map((e) => e.requestId);

  async function listAll(p: Principal, input: Partial<AuditListInput>): Promise<{ events: AuditEvent[]; pages: number }> {
    const events: AuditEvent[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await service.listAuditEvents(p, { ...NO_FILTER, ...input, pageToken });
      events.push(...page.items);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== "" && pages < 100);
    return { events, pages };
  }

  beforeAll(async () => {
    t = await createTestDb();
    service = createAuditService({ db: t.db });
    const a = (i: number, e: Partial<AuditEventInput>) => auditEvent({ developerId: alice, time: minute(i), ...e });
    aliceEvents = [
      a(0, { action: "CreateSecret", secretName: "api_key", version: 1 }),
      a(1, { action: "AccessSecret", secretName: "api_key", version: 1 }),
      a(2, { action: "AccessSecret", secretName: "db_password", outcome: "NOT_FOUND" }),
      a(3, { action: "ResolveSecrets", secretName: "api_key,db_password" }),
      a(4, { action: "ListSecrets", secretName: "" }),
      a(5, { action: "AccessSecret", secretName: "api_key", outcome: "PERMISSION_DENIED" }),
      a(6, { action: "RotateDeveloperKey", secretName: "" }),
      a(7, { action: "AccessSecret", secretName: "api_key_old" }),
    ];
    bobEvents = [0, 1, 2].map((i) => auditEvent({ developerId: bob, time: minute(i), secretName: "bob_secret" }));
    const log = createAuditLog({ db: t.db, writerId: newId("w") });
    const interleaved = [...aliceEvents.slice(0, 4), ...bobEvents, ...aliceEvents.slice(4)];
    for (const e of interleaved) await log.record(e);
    for (let i = 0; i < 501; i++) await log.record(auditEvent({ developerId: many, time: minute(i) }));
    await log.close();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  describe("access", () => {
    it("lists one's own events, newest first, with secrets:read", async () => {
      const page = await service.listAuditEvents(principal(alice, ["secrets:read"]), NO_FILTER);
      expect(ids(page.items)).toEqual(newestFirst(aliceEvents));
      expect(page.nextPageToken).toBe("");
      expect(page.items[0]).toMatchObject({
        developerId: alice,
        action: "AccessSecret",
        secretName: "api_key_old",
        time: minute(7),
        outcome: "OK",
      });
      expect(page.items[0]?.hash).toMatch(/^[0-9a-f]{64}$/);
      const ids_ = page.items.map((e) => e.id);
      expect(ids_).toEqual([...ids_].sort((x, y) => y - x));
    });

    it("treats developer_id equal to the caller as the caller", async () => {
      const page = await service.listAuditEvents(principal(alice, ["secrets:read"]), { ...NO_FILTER, developerId: alice });
      expect(ids(page.items)).toEqual(newestFirst(aliceEvents));
    });

    it("refuses one's own events without secrets:read", async () => {
      const e = await appError(service.listAuditEvents(principal(alice, ["secrets:access", "secrets:write"]), NO_FILTER));
      expect(e).toMatchObject({ kind: "permission_denied", reason: "SCOPE_MISSING", metadata: { scope: "secrets:read" } });
    });

    it("refuses another developer's events without secrets:operator, before validating anything", async () => {
      const reader = principal(alice, ["secrets:read", "secrets:access", "secrets:write", "secrets:keys"]);
      for (const input of [
        { ...NO_FILTER, developerId: bob },
        { ...NO_FILTER, developerId: "not a subject!", pageSize: -1, pageToken: "garbage" },
      ]) {
        const e = await appError(service.listAuditEvents(reader, input));
        expect(e).toMatchObject({ kind: "permission_denied", reason: "SCOPE_MISSING", metadata: { scope: "secrets:operator" } });
      }
    });

    it("lists another developer's events with secrets:operator, and one's own with operator alone", async () => {
      const operator = principal(newId("ops"), ["secrets:operator"]);
      const page = await service.listAuditEvents(operator, { ...NO_FILTER, developerId: bob });
      expect(ids(page.items)).toEqual(newestFirst(bobEvents));
      expect(page.items.every((e) => e.developerId === bob)).toBe(true);
      const own = await service.listAuditEvents(principal(bob, ["secrets:operator"]), NO_FILTER);
      expect(ids(own.items)).toEqual(newestFirst(bobEvents));
    });

    it("applies the token's allowlist: only allowlisted names (and events naming none), and no filter on other names", async () => {
      const p = principal(alice, ["secrets:read"], ["api_key"]);
      const page = await service.listAuditEvents(p, NO_FILTER);
      const expected = aliceEvents.filter((e) => e.secretName === "" || e.secretName === "api_key");
      expect(ids(page.items)).toEqual(newestFirst(expected));
      const e = await appError(service.listAuditEvents(p, { ...NO_FILTER, secretName: "db_password" }));
      expect(e).toMatchObject({ kind: "permission_denied", reason: "NOT_ALLOWLISTED" });
      const none = await service.listAuditEvents(principal(alice, ["secrets:read"], []), NO_FILTER);
      expect(none.items.every((x) => x.secretName === "")).toBe(true);
    });
  });

  describe("filters", () => {
    const reader = () => principal(alice, ["secrets:read"]);

    it("secret_name matches the exact name, alone or among joined names, and nothing that merely starts with it", async () => {
      const page = await service.listAuditEvents(reader(), { ...NO_FILTER, secretName: "api_key" });
      const expected = aliceEvents.filter((e) => e.secretName.split(",").includes("api_key"));
      expect(expected).toHaveLength(4);
      expect(ids(page.items)).toEqual(newestFirst(expected));
      const db = await service.listAuditEvents(reader(), { ...NO_FILTER, secretName: "db_password" });
      expect(db.items.map((e) => e.secretName)).toEqual(["api_key,db_password", "db_password"]);
      const none = await service.listAuditEvents(reader(), { ...NO_FILTER, secretName: "api" });
      expect(none.items).toEqual([]);
    });

    it("action and outcome match exactly, and combine", async () => {
      const access = await service.listAuditEvents(reader(), { ...NO_FILTER, action: "AccessSecret" });
      expect(ids(access.items)).toEqual(newestFirst(aliceEvents.filter((e) => e.action === "AccessSecret")));
      const denied = await service.listAuditEvents(reader(), { ...NO_FILTER, outcome: "PERMISSION_DENIED" });
      expect(ids(denied.items)).toEqual([aliceEvents[5]?.requestId]);
      const both = await service.listAuditEvents(reader(), { ...NO_FILTER, action: "AccessSecret", outcome: "OK" });
      expect(ids(both.items)).toEqual(newestFirst([aliceEvents[1], aliceEvents[7]] as AuditEventInput[]));
    });

    it("the time range includes start_time and excludes end_time", async () => {
      const page = await service.listAuditEvents(reader(), { ...NO_FILTER, startTime: minute(2), endTime: minute(5) });
      expect(ids(page.items)).toEqual(newestFirst(aliceEvents.slice(2, 5)));
      const open = await service.listAuditEvents(reader(), { ...NO_FILTER, startTime: minute(6) });
      expect(ids(open.items)).toEqual(newestFirst(aliceEvents.slice(6)));
      const until = await service.listAuditEvents(reader(), { ...NO_FILTER, endTime: minute(1) });
      expect(ids(until.items)).toEqual(newestFirst(aliceEvents.slice(0, 1)));
    });
  });

  describe("pagination", () => {
    it("walks several pages without gaps or repeats, with the filters held", async () => {
      const p = principal(alice, ["secrets:read"]);
      const { events, pages } = await listAll(p, { pageSize: 3 });
      expect(pages).toBe(3);
      expect(ids(events)).toEqual(newestFirst(aliceEvents));
      const filtered = await listAll(p, { pageSize: 1, action: "AccessSecret" });
      expect(filtered.pages).toBe(4);
      expect(ids(filtered.events)).toEqual(newestFirst(aliceEvents.filter((e) => e.action === "AccessSecret")));
    });

    it("page_size 0 means 50 and more than 500 means 500", async () => {
      const operator = principal(newId("ops"), ["secrets:operator"]);
      const first = await service.listAuditEvents(operator, { ...NO_FILTER, developerId: many });
      expect(first.items).toHaveLength(50);
      expect(first.nextPageToken).not.toBe("");
      const big = await service.listAuditEvents(operator, { ...NO_FILTER, developerId: many, pageSize: 10_000 });
      expect(big.items).toHaveLength(500);
      const rest = await service.listAuditEvents(operator, {
        ...NO_FILTER,
        developerId: many,
        pageSize: 10_000,
        pageToken: big.nextPageToken,
      });
      expect(rest.items).toHaveLength(1);
      expect(rest.nextPageToken).toBe("");
    });

    it("refuses a token used with other filters, for another developer, altered or forged", async () => {
      const p = principal(alice, ["secrets:read"]);
      const { nextPageToken } = await service.listAuditEvents(p, { ...NO_FILTER, pageSize: 2, action: "AccessSecret" });
      expect(nextPageToken).not.toBe("");
      // The binding hash (the end of the JSON) altered: {"a":N,"h":"…"} with one character of h changed.
      const json = Buffer.from(nextPageToken, "base64url").toString("utf8");
      const altered = Buffer.from(json.replace(/"h":"(.)/, (_m, c: string) => `"h":"${c === "A" ? "B" : "A"}`)).toString("base64url");
      expect(altered).not.toBe(nextPageToken);
      const forged = Buffer.from(JSON.stringify({ a: 999_999, h: "x" })).toString("base64url");
      const cases: [Principal, Partial<AuditListInput>][] = [
        [p, { pageSize: 2, pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "GetSecret", pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "AccessSecret", outcome: "OK", pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "AccessSecret", secretName: "api_key", pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "AccessSecret", startTime: minute(0), pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "AccessSecret", endTime: minute(9), pageToken: nextPageToken }],
        [principal(bob, ["secrets:read"]), { pageSize: 2, action: "AccessSecret", pageToken: nextPageToken }],
        [principal(alice, ["secrets:read"], ["api_key"]), { pageSize: 2, action: "AccessSecret", pageToken: nextPageToken }],
        [p, { pageSize: 2, action: "AccessSecret", pageToken: altered }],
        [p, { pageSize: 2, action: "AccessSecret", pageToken: "not a token" }],
        [p, { pageSize: 2, action: "AccessSecret", pageToken: forged }],
      ];
      for (const [who, input] of cases) {
        const e = await appError(service.listAuditEvents(who, { ...NO_FILTER, ...input }));
        expect(e).toMatchObject({ kind: "invalid_argument", reason: "INVALID_PAGE_TOKEN", metadata: { field: "page_token" } });
      }
      // The page size is not bound: a client may change it between pages.
      const next = await service.listAuditEvents(p, { ...NO_FILTER, pageSize: 10, action: "AccessSecret", pageToken: nextPageToken });
      expect(next.items.length).toBeGreaterThan(0);
    });
  });

  describe("invalid input", () => {
    const operator = () => principal(newId("ops"), ["secrets:operator"]);
    it.each<[string, Partial<AuditListInput>, string, string]>([
      ["negative page_size", { pageSize: -1 }, "INVALID_PAGE_SIZE", "page_size"],
      ["malformed secret_name", { secretName: "1password" }, "INVALID_NAME", "secret_name"],
      ["secret_name with a comma", { secretName: "a,b" }, "INVALID_NAME", "secret_name"],
      ["unknown action", { action: "StealSecret" }, "INVALID_ARGUMENT", "action"],
      ["lowercase outcome", { outcome: "not_found" }, "INVALID_ARGUMENT", "outcome"],
      ["malformed developer_id", { developerId: "bob smith" }, "INVALID_ARGUMENT", "developer_id"],
      ["over-long developer_id", { developerId: "d".repeat(129) }, "INVALID_ARGUMENT", "developer_id"],
      ["end before start", { startTime: minute(5), endTime: minute(4) }, "INVALID_ARGUMENT", "end_time"],
      ["invalid start_time", { startTime: new Date(Number.NaN) }, "INVALID_ARGUMENT", "start_time"],
      ["end_time beyond year 9999", { endTime: new Date(Date.UTC(10_000, 0, 1)) }, "INVALID_ARGUMENT", "end_time"],
    ])("%s is INVALID_ARGUMENT", async (_label, input, reason, field) => {
      const e = await appError(service.listAuditEvents(operator(), { ...NO_FILTER, ...input }));
      expect(e).toMatchObject({ kind: "invalid_argument", reason, metadata: { field } });
    });

    it("never echoes a rejected secret_name", async () => {
      const pasted = "sk-live-abcdef0123456789";
      const e = await appError(service.listAuditEvents(operator(), { ...NO_FILTER, secretName: pasted }));
      expect(e.message).not.toContain(pasted);
      expect(JSON.stringify(e.metadata)).not.toContain(pasted);
    });
  });

  describe("across the format change", () => {
    const before = newId("before");
    const after = newId("after");
    const mixed = newId("mixed");
    let mixedEvents: AuditEventInput[];

    beforeAll(async () => {
      // The same events, once as the release before stored them and once as now.
      const as = (developerId: string) => aliceEvents.map((e) => ({ ...e, developerId, callerSubject: developerId }));
      await writeOldFormatChain(t.db, as(before));
      const log = createAuditLog({ db: t.db, writerId: newId("w") });
      for (const e of as(after)) await log.record(e);
      // One developer's trail begun before the upgrade and continued after it.
      mixedEvents = Array.from({ length: 7 }, (_, i) => auditEvent({ developerId: mixed, time: minute(20 + i), secretName: `s_${i % 2}` }));
      await writeOldFormatChain(t.db, mixedEvents.slice(0, 4));
      for (const e of mixedEvents.slice(4)) await log.record(e);
      await log.close();
    });

    /** An event as a client sees it, but for what differs by design between the two writes (id, writer, hash, developer). */
    const comparable = (e: AuditEvent) => ({ ...e, id: 0, writerId: "", hash: "", developerId: "", callerSubject: "" });

    it.each([
      ["no filter", {}],
      ["action", { action: "AccessSecret" }],
      ["outcome", { outcome: "NOT_FOUND" }],
      ["secret name", { secretName: "db_password" }],
      ["time range", { startTime: minute(2), endTime: minute(6) }],
    ] as const)("lists the same events whichever format stored them (%s)", async (_label, filter) => {
      const old = await listAll(principal(before, ["secrets:read"]), { ...filter, pageSize: 3 });
      const now = await listAll(principal(after, ["secrets:read"]), { ...filter, pageSize: 3 });
      expect(now.events.length).toBeGreaterThan(0);
      expect(now.events.map(comparable)).toEqual(old.events.map(comparable));
      expect(now.pages).toBe(old.pages);
      expect(now.events.every((e) => e.developerId === after && e.callerSubject === after)).toBe(true);
    });

    it("lists an allowlisted token's events the same way", async () => {
      const old = await listAll(principal(before, ["secrets:read"], ["api_key"]), {});
      const now = await listAll(principal(after, ["secrets:read"], ["api_key"]), {});
      expect(now.events.map(comparable)).toEqual(old.events.map(comparable));
    });

    it("pages one trail across both tables, newest first", async () => {
      const { events, pages } = await listAll(principal(mixed, ["secrets:read"]), { pageSize: 2 });
      expect(ids(events)).toEqual(newestFirst(mixedEvents));
      expect(pages).toBe(4);
      const filtered = await listAll(principal(mixed, ["secrets:read"]), { secretName: "s_0", pageSize: 1 });
      expect(ids(filtered.events)).toEqual(newestFirst(mixedEvents.filter((e) => e.secretName === "s_0")));
    });
  });
});
