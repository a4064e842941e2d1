import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ExecuteQueryRequestSchema,
  FindSlowTracesRequestSchema,
  GetExemplarsRequestSchema,
  GetPercentileRequestSchema,
  ListServicesRequestSchema,
  StreamQueryRequestSchema,
} from "../../gen/coral/colony/v1/query_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { applyDefaults, checkRequest, prepare } from "./defaults.js";

// These use the table generated from query.proto's annotations, so they also check that the
// generator turned "1h", "99" and "500ms" into values of the right JS type.
describe("applyDefaults", () => {
  it("fills what the caller left unset with the proto's defaults, in the field's JS type", () => {
    const req = applyDefaults(GetPercentileRequestSchema, create(GetPercentileRequestSchema, { service: "payments" }));
    expect(req.service).toBe("payments");
    expect(req.metric).toBe("http.server.duration");
    expect(req.percentile).toBe(0.99);
    expect(req.timeRangeMs).toBe(3_600_000n);

    const slow = applyDefaults(FindSlowTracesRequestSchema, create(FindSlowTracesRequestSchema, { service: "x" }));
    expect(slow.minDurationNs).toBe(500_000_000n);
    expect(slow.limit).toBe(100);

    const stream = applyDefaults(StreamQueryRequestSchema, create(StreamQueryRequestSchema, { sql: "SELECT 1" }));
    expect(stream.maxRows).toBe(1_000_000n);
  });

  it("keeps what the caller set, including values a check will later refuse", () => {
    const req = applyDefaults(
      GetPercentileRequestSchema,
      create(GetPercentileRequestSchema, { service: "s", metric: "m", percentile: 1.5, timeRangeMs: -1n }),
    );
    expect(req).toMatchObject({ metric: "m", percentile: 1.5, timeRangeMs: -1n });
  });

  it("leaves messages without defaults alone", () => {
    expect(applyDefaults(ListServicesRequestSchema, create(ListServicesRequestSchema, {}))).toMatchObject({ namespace: "", region: "" });
    expect(applyDefaults(ExecuteQueryRequestSchema, create(ExecuteQueryRequestSchema, {})).sql).toBe("");
  });

  it("takes another table when given one", () => {
    const table = { "coral.colony.v1.ListServicesRequest": { region: "eu-west-1" } };
    const req = applyDefaults(ListServicesRequestSchema, create(ListServicesRequestSchema, {}), table);
    expect(req.region).toBe("eu-west-1");
  });
});

// The bounds table is generated from the proto's `min`/`max` annotations too.
describe("checkRequest", () => {
  const check = <T extends Parameters<typeof create>[0]>(schema: T, init: Parameters<typeof create<T>>[1]) => () =>
    prepare(schema, create(schema, init) as never);

  it("refuses what breaks a bound, in the field's own terms, after defaults", () => {
    expect(check(FindSlowTracesRequestSchema, { service: "x", limit: 1001 })).toThrow("limit must be in 1..1000; got 1001");
    expect(check(FindSlowTracesRequestSchema, { service: "x", minDurationNs: -1n })).toThrow("min_duration_ns must be at least 0; got -1");
    expect(check(GetPercentileRequestSchema, { service: "x", percentile: 0 })).toThrow("percentile must be in (0, 1]; got 0");
    expect(check(StreamQueryRequestSchema, { sql: "SELECT 1", maxRows: -3n })).toThrow("max_rows must be at least 1; got -3");
  });

  it("a required (positional) field must be there and not blank", () => {
    expect(check(GetPercentileRequestSchema, {})).toThrow("service is required");
    expect(check(ExecuteQueryRequestSchema, { sql: " \n" })).toThrow("sql is required");
  });

  it("a required number left at 0 that its bounds refuse is refused by its bounds, as the CLI words it", () => {
    expect(check(GetExemplarsRequestSchema, { service: "x" })).toThrow(/ exemplars must be in 1\.\.100; got 0$/);
    expect(check(GetExemplarsRequestSchema, { service: "x", exemplars: 101 })).toThrow(/ exemplars must be in 1\.\.100; got 101$/);
    expect(check(GetExemplarsRequestSchema, { service: "x", exemplars: 1 })).not.toThrow();
    // A 0 its bounds allow, or a field without bounds: the 0 reads as absent, so "required".
    const table = { "coral.colony.v1.ListServicesRequest": { n: { name: "n", required: true, min: 0 }, m: { name: "m", required: true } } };
    const bare = (init: Record<string, unknown>) => () => checkRequest(ListServicesRequestSchema, Object.assign(create(ListServicesRequestSchema, {}), init), table);
    expect(bare({ n: 0, m: 1 })).toThrow(/ n is required$/);
    expect(bare({ n: 1, m: 0n })).toThrow(/ m is required$/);
    expect(bare({ n: -1, m: 1 })).toThrow(/ n must be at least 0; got -1$/);
  });

  it("lets through the edges and what defaults fill in", () => {
    expect(check(FindSlowTracesRequestSchema, { service: "x", limit: 1000, minDurationNs: 0n })).not.toThrow();
    expect(check(FindSlowTracesRequestSchema, { service: "x", limit: 0 })).not.toThrow(); // 0 is "the default"
    expect(check(GetPercentileRequestSchema, { service: "x", percentile: 1 })).not.toThrow();
    expect(check(ListServicesRequestSchema, {})).not.toThrow();
  });

  it("answers invalid_argument", () => {
    try {
      check(FindSlowTracesRequestSchema, { service: "x", limit: 5000 })();
    } catch (e) {
      expect((e as ConnectError).code).toBe(Code.InvalidArgument);
      return;
    }
    expect.unreachable();
  });
});
