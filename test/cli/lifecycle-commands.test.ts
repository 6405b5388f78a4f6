import { describe, expect, it } from "vitest";
import { expectNoMarkers, runAtTerminal, useCliFixture } from "./cli-process.js";

// The lifecycle commands through the real CLI against a real service, a few runs
// each: delete into the recovery bin, list --deleted, restore by name and by id,
// delete --force, expiry and rotation on create, update, get and list, and the
// flag combinations that are usage errors (exit 2, nothing sent).

/** How far the service's clock runs ahead of the real one; a test moves it instead of sleeping. */
let clockOffsetMs = 0;
const fixture = useCliFixture("lifecycle", { clock: () => new Date(Date.now() + clockOffsetMs), lifecycleJobs: "manual" });

describe("the recovery bin", () => {
  it("delete says where the secret went; list --deleted shows it; restore by name or id brings it back", { timeout: 120_000 }, async () => {
    const value = "marker-bin-value-4f1c";
    const dev = await fixture.developer("cli-bin", { db_password: value, api_key: "marker-api-key-77aa" });
    const original = await dev.client.secrets.get("db_password");

    const deleted = await dev.cli(["delete", "db_password", "--recovery-days", "3"]);
    expect(deleted).toMatchObject({ code: 0, stderr: "" });
    expect(deleted.stdout).toBe("deleted db_password: it is in the recovery bin for 3 day(s); secrets restore db_password brings it back\n");

    const binned = await dev.cli(["list", "--deleted"]);
    expect(binned.code, binned.stderr).toBe(0);
    const [header, row, ...rest] = binned.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME\s+ID\s+VERSION\s+DELETED\s+PURGE$/);
    expect(row).toMatch(new RegExp(`^db_password\\s+${original.id}\\s+1\\s+\\S+ \\S+Z\\s+\\S+ \\S+Z$`));
    expect(rest).toEqual([]);
    const binnedJson = JSON.parse((await dev.cli(["list", "--deleted", "--json"])).stdout) as Record<string, string>[];
    expect(binnedJson).toEqual([expect.objectContaining({ id: original.id, name: "db_password" })]);
    const [entry] = binnedJson;
    expect(Date.parse(entry?.["purgeTime"] ?? "") - Date.parse(entry?.["deleteTime"] ?? "")).toBe(3 * 86_400_000);

    // The name is free at once; restoring by name is refused while the new one lives.
    expect((await dev.cli(["create", "db_password", "--value-file", "-"], "marker-newer-value-9d0e")).code).toBe(0);
    const taken = await dev.cli(["restore", "db_password"]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^secrets: ALREADY_EXISTS \(RESTORE_NAME_TAKEN\)/);

    const forced = await dev.cli(["delete", "db_password", "--force", "--json"]);
    expect(JSON.parse(forced.stdout)).toEqual({ name: "db_password", deleted: true, recoverable: false });
    const restored = await dev.cli(["restore", "--id", original.id]);
    expect(restored).toMatchObject({ code: 0, stdout: "restored db_password (version 1)\n" });
    expect(await dev.client.secrets.access("db_password")).toMatchObject({ value });

    // A forced delete says it is permanent, and restore then finds nothing.
    expect(await dev.cli(["delete", "api_key", "--force"])).toMatchObject({
      code: 0,
      stdout: "deleted api_key for good: it skipped the recovery bin and cannot be restored\n",
    });
    const gone = await dev.cli(["restore", "api_key"]);
    expect(gone).toMatchObject({ code: 1, stdout: "" });
    expect(gone.stderr).toMatch(/^secrets: NOT_FOUND \(SECRET_NOT_FOUND\)/);

    for (const result of [deleted, binned, restored, gone]) expectNoMarkers(result, [value, dev.token]);
  });
});

describe("expiry and rotation", () => {
  it("create and update set them, get and list show them, list filters on them", { timeout: 120_000 }, async () => {
    const dev = await fixture.developer("cli-schedules");
    const created = await dev.cli(["create", "stripe_key", "--expire-in", "7d", "--rotate-every", "30d", "--value-file", "-"], "marker-stripe-value-a1b2");
    expect(created).toMatchObject({ code: 0, stdout: "created stripe_key (version 1)\n" });
    expect((await dev.cli(["create", "plain", "--value-file", "-"], "marker-plain-value-c3d4")).code).toBe(0);

    const shown = await dev.cli(["get", "stripe_key"]);
    expect(shown.stdout).toMatch(/^expires: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m);
    expect(shown.stdout).toMatch(/^rotation: +every 30d, next \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m);
    const json = JSON.parse((await dev.cli(["get", "stripe_key", "--json"])).stdout) as { expireTime: string; rotation: { periodSeconds: number; nextRotationTime: string } };
    expect(Date.parse(json.expireTime) - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
    expect(json.rotation).toEqual({ periodSeconds: 30 * 86_400, nextRotationTime: expect.stringMatching(/Z$/) });
    expect((await dev.cli(["get", "plain"])).stdout).toMatch(/^expires: +never\nrotation: +none$/m);

    const listed = await dev.cli(["list"]);
    expect(listed.stdout).toMatch(/^NAME\s+VERSION\s+UPDATED\s+EXPIRES\s+ROTATION\s+DESCRIPTION\n/);
    expect(listed.stdout).toMatch(/^plain\s+1\s+\S+ \S+\s+-\s+-$/m);
    expect(listed.stdout).toMatch(/^stripe_key\s+1\s+\S+ \S+\s+\S+ \S+Z\s+every 30d, next \S+ \S+Z$/m);
    expect((await dev.cli(["list", "--expires-before", "8d"])).stdout).toMatch(/^stripe_key\s/m);
    expect(await dev.cli(["list", "--expires-before", "6d"])).toMatchObject({ code: 0, stdout: "", stderr: "no secrets\n" });
    expect(await dev.cli(["list", "--rotation-due"])).toMatchObject({ code: 0, stdout: "", stderr: "no secrets\n" });

    // update changes only what its flags name, without reading a value.
    expect(await dev.cli(["update", "stripe_key", "--no-expire", "--no-rotation"])).toMatchObject({ code: 0, stdout: "updated stripe_key (version 1)\n" });
    expect((await dev.cli(["get", "stripe_key"])).stdout).toMatch(/^expires: +never\nrotation: +none$/m);
    expect((await dev.cli(["update", "plain", "--expire-at", "2099-01-01T00:00:00Z", "--rotate-every", "12h"])).code).toBe(0);
    expect(await dev.client.secrets.get("plain")).toMatchObject({ version: 1, expireTime: new Date("2099-01-01T00:00:00Z"), rotation: { periodSeconds: 43_200 } });

    // Ranges are the service's: a period under an hour is refused with the field it names.
    const tooOften = await dev.cli(["update", "plain", "--rotate-every", "30m"]);
    expect(tooOften.code).toBe(1);
    expect(tooOften.stderr).toMatch(/^secrets: INVALID_ARGUMENT \(INVALID_ARGUMENT\): rotation\.rotation_period/);
    expectNoMarkers(listed, [dev.token, "marker-stripe-value-a1b2", "marker-plain-value-c3d4"]);
  });

  it("a due rotation shows in get and list --rotation-due until a new value is written", { timeout: 120_000 }, async () => {
    const dev = await fixture.developer("cli-due", { signing_key: "marker-signing-value-e5f6" });
    expect((await dev.cli(["update", "signing_key", "--rotate-every", "1h"])).code).toBe(0);
    clockOffsetMs += 3_601_000;
    await fixture.svc.service.runLifecycleJobs();

    const due = await dev.cli(["list", "--rotation-due"]);
    expect(due.stdout).toMatch(/^NAME\s+VERSION\s+UPDATED\s+ROTATION\s+DESCRIPTION\n/);
    expect(due.stdout).toMatch(/^signing_key\s+1\s+\S+ \S+\s+every 1h, next \S+ \S+Z, due since \S+ \S+Z$/m);
    expect((await dev.cli(["get", "signing_key"])).stdout).toMatch(/^rotation: +every 1h, next \S+ \S+Z, due since \S+ \S+Z$/m);
    const json = JSON.parse((await dev.cli(["get", "signing_key", "--json"])).stdout) as { rotation: { dueTime?: string } };
    expect(json.rotation.dueTime).toMatch(/Z$/);

    expect((await dev.cli(["update", "signing_key", "--value-file", "-"], "marker-signing-value-f7a8")).code).toBe(0);
    expect(await dev.cli(["list", "--rotation-due"])).toMatchObject({ code: 0, stdout: "", stderr: "no secrets\n" });
    expect((await dev.cli(["get", "signing_key"])).stdout).not.toContain("due since");
  });
});

describe("at a terminal", () => {
  it("delete asks first, and with --force says the delete is for good", { timeout: 120_000 }, async () => {
    const dev = await fixture.developer("cli-tty", { doomed: "marker-doomed-value-5e6f" });
    const env = { SECRETS_ADDR: fixture.svc.address, SECRETS_TOKEN: dev.token };
    const declined = await runAtTerminal(["delete", "doomed", "--force"], env, { prompt: "[y/N]", typed: "n\r" });
    expect(declined.stdout).toContain("delete doomed and all its versions for good? This cannot be undone. [y/N]");
    expect(declined.stdout).toContain("secrets: not deleted");
    expect(declined.code).toBe(1);
    expect(await dev.client.secrets.get("doomed")).toMatchObject({ name: "doomed" });

    const binDeclined = await runAtTerminal(["delete", "doomed"], env, { prompt: "[y/N]", typed: "n\r" });
    expect(binDeclined.stdout).toContain("move doomed and all its versions to the recovery bin? [y/N]");
    expect(binDeclined.code).toBe(1);

    const confirmed = await runAtTerminal(["delete", "doomed", "--force"], env, { prompt: "[y/N]", typed: "y\r" });
    expect(confirmed.stdout).toContain("deleted doomed for good: it skipped the recovery bin and cannot be restored");
    expect(confirmed.code).toBe(0);
    expect(await dev.client.secrets.restore({ name: "doomed" }).catch((e: { reason?: string }) => e.reason)).toBe("SECRET_NOT_FOUND");
  });
});

describe("usage errors", () => {
  it("conflicting or missing flags exit 2 and send nothing", { timeout: 120_000 }, async () => {
    const dev = await fixture.developer("cli-usage", { kept: "marker-kept-value-31b2" });
    const runs = [
      ["delete", "kept", "--force", "--recovery-days", "3"],
      ["restore"],
      ["restore", "kept", "--id", "0b6c3c4e-0000-4000-8000-000000000000"],
      ["update", "kept", "--expire-in", "7d", "--no-expire"],
      ["create", "other", "--expire-in", "7d", "--expire-at", "2099-01-01T00:00:00Z", "--value", "x"],
      ["update", "kept", "--next-rotation", "2099-01-01T00:00:00Z"],
      ["list", "--expires-before", "soon"],
    ];
    for (const args of runs) {
      const result = await dev.cli(args);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^secrets: /);
    }
    expect(await dev.client.secrets.get("kept")).toMatchObject({ version: 1 });
    expect((await dev.cli(["get", "other"])).code).toBe(1);
  });
});
