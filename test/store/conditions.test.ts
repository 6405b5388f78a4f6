import { describe, expect, it } from "vitest";
import { conditions } from "../../src/store/conditions.js";

describe("WHERE conditions", () => {
  it("numbers each value after the parameters already there, and joins the conditions with AND", () => {
    const params: unknown[] = ["dev", 10];
    const where = conditions(params, "developer_id = $1");
    where.add((p) => `name > ${p}`, "b");
    where.namePrefix("");
    where.nameIn(undefined);
    where.namePrefix("db_");
    where.nameIn(["db_a", "db_b"]);
    expect(where.sql).toBe("developer_id = $1 AND name > $3 AND name >= $4 AND name < $5 AND name = ANY($6::text[])");
    expect(params).toEqual(["dev", 10, "b", "db_", "db_\u007f", ["db_a", "db_b"]]);
  });
});
