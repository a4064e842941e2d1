import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ExecuteQueryRequestSchema,
  FindSlowTracesRequestSchema,
  GetPercentileRequestSchema,
  ListServicesRequestSchema,
  StreamQueryRequestSchema,
} from "../../gen/coral/colony/v1/query_pb.js";
import { applyDefaults } from "./defaults.js";

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
