// The generated `coral query` commands in process: flags → the request the colony receives, and
// the answer → table, json and csv. A stand-in QueryService on a real HTTP port answers with fixed
// responses and records what it was asked; the e2e suites run the same commands against a colony.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Cli } from "clipanion";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { commands } from "../../gen/coral/colony/v1/query_cli.js";
import { FindSlowTracesResponseSchema, QueryService, TraceSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { queryCommand } from "./query-command.js";

const asked: { method: string; request: Record<string, unknown> }[] = [];

const trace = (id: string, ms: number): MessageInitShape<typeof TraceSchema> => ({
  traceId: id,
  durationNs: BigInt(ms * 1_000_000),
  timestamp: timestampFromDate(new Date("2026-12-01T10:00:00Z")),
  service: "payments",
  rootName: "POST /charge",
  spanCount: 3,
  error: false,
});

function routes(router: ConnectRouter): void {
  router.service(QueryService, {
    getPercentile(req) {
      asked.push({ method: "GetPercentile", request: { ...req } });
      return { value: 912_345_678, unit: "nanoseconds", sampleCount: 40n };
    },
    findSlowTraces(req) {
      asked.push({ method: "FindSlowTraces", request: { ...req } });
      return create(FindSlowTracesResponseSchema, { traces: [trace("a".repeat(32), 1500), trace("b".repeat(32), 700)], totalCount: 7n });
    },
    executeQuery(req) {
      asked.push({ method: "ExecuteQuery", request: { ...req } });
      if (req.sql.includes("boom")) throw new ConnectError("Binder Error: no column boom", Code.InvalidArgument);
      return {
        columns: [{ name: "service", type: "VARCHAR" }, { name: "n", type: "BIGINT" }],
        rows: [{ values: [{ kind: { case: "stringValue", value: "pay,ments" } }, { kind: { case: "numberValue", value: 3 } }] }],
        truncated: true,
      };
    },
  });
}

let server: Server;
let colony: string;

beforeAll(async () => {
  server = createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  colony = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  asked.length = 0;
});

const cli = new Cli({ binaryName: "coral" });
for (const spec of commands) cli.register(queryCommand(spec));

async function coral(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = "";
  let stderr = "";
  out.on("data", (c) => (stdout += c));
  err.on("data", (c) => (stderr += c));
  const env = process.env.CORAL_TOKEN;
  delete process.env.CORAL_TOKEN;
  try {
    const code = await cli.run([...argv, "--colony", colony], { stdout: out, stderr: err });
    return { code, stdout, stderr };
  } finally {
    if (env !== undefined) process.env.CORAL_TOKEN = env;
  }
}

describe("flags → request", () => {
  it("converts each flag by its parse rule and fills the proto's defaults", async () => {
    const r = await coral("query", "metrics", "payments", "--percentile", "99.9", "--window", "5m");
    expect(r.code).toBe(0);
    expect(asked).toEqual([
      { method: "GetPercentile", request: expect.objectContaining({ service: "payments", metric: "http.server.duration", percentile: 0.999, timeRangeMs: 300_000n }) },
    ]);
  });

  it("picks the variant its switch names, with that variant's defaults", async () => {
    await coral("query", "traces", "payments", "--threshold", "1.5s", "--limit", "2");
    expect(asked[0]).toEqual({
      method: "FindSlowTraces",
      request: expect.objectContaining({ service: "payments", minDurationNs: 1_500_000_000n, limit: 2, timeRangeMs: 3_600_000n }),
    });
  });

  it.each([
    [["query", "traces", "payments", "--limit", "1001"], "coral: --limit: must be in 1..1000; got 1001"],
    [["query", "metrics", "payments", "--percentile", "0"], "coral: --percentile:"],
    [["query", "metrics", "payments", "--window", "5"], 'coral: --window: "5" is not a duration'],
    [["query", "metrics", "payments", "--error-rate", "--metric", "x"], "coral: --metric does not apply with --error-rate"],
    [["query", "traces", "payments", "--slow", "--errors"], "coral: choose one of --slow, --errors"],
  ])("refuses %j before asking the colony", async (argv, message) => {
    const r = await coral(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(asked).toEqual([]);
  });
});

describe("answer → output", () => {
  it("shows a table in human units, and the annotated total in the footer", async () => {
    const r = await coral("query", "traces", "payments");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(/^TRACE_ID\s+DURATION/);
    expect(r.stdout).toContain("1.50s");
    expect(r.stdout).toContain("700.0ms");
    expect(r.stderr).toBe("(2 of 7 shown)\n");
  });

  it("gives json with the API's field names and raw values", async () => {
    const r = await coral("query", "traces", "payments", "-o", "json");
    const answer = JSON.parse(r.stdout);
    expect(answer.total_count).toBe(7);
    expect(answer.traces[0]).toMatchObject({ trace_id: "a".repeat(32), duration_ns: 1_500_000_000, span_count: 3 });
    expect(r.stderr).toBe("");
  });

  it("writes csv with quoting, and says a SQL result was cut", async () => {
    const csv = await coral("query", "sql", "SELECT 1", "-o", "csv");
    expect(csv.stdout).toBe('service,n\r\n"pay,ments",3\r\n'); // RFC 4180 line ends
    const table = await coral("query", "sql", "SELECT 1");
    expect(table.stderr).toContain("truncated at the row limit");
  });

  it("reports the colony's refusal as one line with a usage exit code", async () => {
    const r = await coral("query", "sql", "SELECT boom");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^coral: .*Binder Error: no column boom/);
    expect(r.stderr).not.toContain("    at ");
  });
});
