// The start-up check of `--otel-schema` on embedded ClickHouse: which tables pass as the
// exporter's, and the one line each wrong one gets. One chdb directory for the file (chdb's rule).
import { rmSync } from "node:fs";
import type { ClickHouseClient } from "@clickhouse/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { otelTracesDdl } from "../../../../test/helpers/otel-spans.js";
import { chdbClient } from "../testing.js";
import { checkTableName, inspectOtelTable, OtelTableError } from "./source.js";

let client: ClickHouseClient;
let dir: string;

beforeAll(async () => {
  ({ client, dir } = await chdbClient());
  await client.command({ query: "CREATE DATABASE IF NOT EXISTS coral" });
});

afterAll(async () => {
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Creates `name` from the exporter's DDL with `edit` applied. */
async function table(name: string, edit: (ddl: string) => string = (d) => d): Promise<void> {
  await client.command({ query: edit(otelTracesDdl(`coral.${name}`)) });
}

describe("inspectOtelTable", () => {
  it("accepts the exporter's table with either Duration type, and says which", async () => {
    await table("t_uint");
    await table("t_int", (d) => d.replace("Duration UInt64", "Duration Int64"));
    expect(await inspectOtelTable(client, "coral", "t_uint")).toEqual({ database: "coral", table: "t_uint", durationType: "UInt64" });
    expect(await inspectOtelTable(client, "coral", "t_int")).toEqual({ database: "coral", table: "t_int", durationType: "Int64" });
  });

  it("accepts plain String where the exporter has LowCardinality, and a Timestamp with a time zone", async () => {
    await table("t_plain", (d) => d.replace(/LowCardinality\(String\)/g, "String").replace("Timestamp DateTime64(9),", "Timestamp DateTime64(9, 'UTC'),"));
    expect((await inspectOtelTable(client, "coral", "t_plain")).durationType).toBe("UInt64");
  });

  it("refuses a missing table, missing columns and wrong types with one line naming them", async () => {
    await table("t_missing", (d) => d.replace(/\n  StatusCode [^\n]*/, "").replace(/\n  SpanAttributes [^\n]*/, ""));
    await table("t_types", (d) => d.replace("Duration UInt64", "Duration Float64").replace("SpanAttributes Map(LowCardinality(String), String)", "SpanAttributes Map(String, Int64)"));
    const cases: [string, RegExp][] = [
      ["nope", /^--otel-schema: table coral\.nope does not exist \(or the user may not read it\)/],
      ["t_missing", /^--otel-schema: table coral\.t_missing is not an OpenTelemetry Collector traces table: it has no columns SpanAttributes, StatusCode$/],
      ["t_types", /^--otel-schema: table coral\.t_types has columns of other types than the exporter writes: SpanAttributes is Map\(String, Int64\), expected Map\(LowCardinality\(String\), String\); Duration is Float64, expected UInt64 or Int64$/],
    ];
    for (const [name, why] of cases) {
      const err = await inspectOtelTable(client, "coral", name).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(OtelTableError);
      expect((err as Error).message, name).toMatch(why);
      expect((err as Error).message).not.toContain("\n");
    }
  });

  it("reads the name as a value: a name shaped like SQL is looked up, not run", async () => {
    const err = await inspectOtelTable(client, "coral", "x' OR 1=1 --").catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/does not exist/);
  });
});

describe("checkTableName", () => {
  it("takes plain identifiers and refuses the rest, quoting them safely", () => {
    expect(checkTableName("otel_traces")).toBe("otel_traces");
    expect(checkTableName("_T2")).toBe("_T2");
    for (const bad of ["", "2traces", "a.b", "a`b", "a b", "t;DROP TABLE x", "x\u0000y", "ü", "t".repeat(129)]) {
      expect(() => checkTableName(bad), JSON.stringify(bad)).toThrow(OtelTableError);
    }
    expect(() => checkTableName("x".repeat(500))).toThrow(/"x{77}\.\.\." is not a table name/);
  });
});
