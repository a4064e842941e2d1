// The MCP emitter's model → tool mapping, on the real query API (its embedded descriptors carry
// the annotations, not the comments): names, argument names as on the CLI, schemas whose types,
// bounds, defaults and patterns accept exactly what `coral mcp` accepts.
import { describe, expect, it } from "vitest";
import { toolRequest } from "../mcp/arguments.js";
import { file_coral_colony_v1_query } from "../gen/coral/colony/v1/query_pb.js";
import { tools as generated } from "../gen/coral/colony/v1/query_mcp.js";
import { parseDurationNs } from "../surface/units.js";
import { inputSchema, mcpRpcs, toolArgs, toolName } from "./mcp.js";
import { ModelError, rpcsOf } from "./model.js";

const rpcs = mcpRpcs(rpcsOf(file_coral_colony_v1_query.services));
const rpc = (name: string) => rpcs.find((r) => r.method.name === name)!;
type Props = Record<string, Record<string, unknown>>;

describe("MCP tools from the proto", () => {
  it("names a tool by its RPC in snake_case, one per RPC with a CLI view", () => {
    expect(rpcs.map(toolName)).toEqual(generated.map((t) => t.name));
    expect(toolName(rpc("FindSlowTraces"))).toBe("find_slow_traces");
  });

  it("takes arguments named and written as on the command line", () => {
    const schema = inputSchema(rpc("FindSlowTraces"));
    const props = schema.properties as Props;
    expect(Object.keys(props)).toEqual(["service", "threshold", "window", "limit", "output"]);
    expect(schema.required).toEqual(["service"]);
    expect(schema.additionalProperties).toBe(false);
    expect(props.threshold).toMatchObject({ type: "string", default: "500ms" });
    expect(props.limit).toMatchObject({ type: "integer", minimum: 1, maximum: 1000, default: 100 });
    expect(props.service).toMatchObject({ type: "string", minLength: 1 });
    expect(toolArgs(rpc("FindSlowTraces"))[1]).toEqual({ name: "threshold", field: "minDurationNs", parse: "durationNs", default: "500ms", min: "0s" });
    const percentile = (inputSchema(rpc("GetPercentile")).properties as Props).percentile!;
    expect(percentile).toMatchObject({ type: "number", exclusiveMinimum: 0, maximum: 100, default: 99 });
    expect(percentile.description).toContain("a percentage, written like 99 or 99.9");
    expect((inputSchema(rpc("StreamQuery")).properties as Props).max_rows).toMatchObject({ type: "integer", minimum: 1 });
  });

  it("gives durations a pattern that accepts exactly what the server parses", () => {
    const pattern = new RegExp((inputSchema(rpc("GetService")).properties as Props).window!.pattern as string, "u");
    for (const text of ["5m", "1h30m", "500ms", ".5s", "250us", "2d", " 1h ", "1.5s", "5", "5 m", "m", "-5m", "", "1h-5m", "5mins"]) {
      let parses = true;
      try {
        parseDurationNs(text);
      } catch {
        parses = false;
      }
      expect(pattern.test(text), JSON.stringify(text)).toBe(parses);
    }
  });

  it("fills the defaults the annotations state, converted like the CLI's", () => {
    const tool = generated.find((t) => t.name === "find_slow_traces")!;
    expect(toolRequest(tool, { service: "payments" }).init).toEqual({ service: "payments", minDurationNs: 500_000_000n, timeRangeMs: 3_600_000n, limit: 100 });
    const p = generated.find((t) => t.name === "get_percentile")!;
    expect(toolRequest(p, { service: "payments", percentile: 99.9, window: "5m" }).init).toMatchObject({ percentile: 0.999, timeRangeMs: 300_000n });
  });

  it("refuses a request field that would shadow the tools' own output argument", () => {
    const r = rpc("ListServices");
    const shadowed = { ...r, params: [{ ...r.params[0]!, name: "output", flag: "--output" }] };
    expect(() => inputSchema(shadowed)).toThrow(ModelError);
  });
});
