// Exemplars (issue #15 item 2): `coral query metrics SERVICE --exemplars N` names requests whose
// duration falls in the bucket of the percentile it answers, checked against the raw spans with
// plain SQL; its bounds are refused the same way by the CLI and by `coral mcp`; and a percentile
// asked without --exemplars answers exactly as before.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bucketIndex } from "../../colony/store/sketch.js";
import { Code, createClient } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { runCoral, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { epochMicros } from "../helpers/engine-sql.js";
import { failureOf } from "../helpers/rpc.js";
import { queryJson, sqlQuote, sqlRows } from "../helpers/query.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
// The whole static demo: a sliding hour could cross a minute between two calls that are compared.
const WINDOW = "24h";

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

const coral = (...args: string[]) => runCoral(args, { env: { CORAL_COLONY_ADDR: colony.addr } });

describe("coral query metrics --exemplars", () => {
  for (const [service, percentile] of [["payments", "99"], ["orders", "50"], ["frontend", "99.9"]] as const) {
    it(`${service} p${percentile}: every exemplar is a stored SERVER span whose duration lies in the answer's bucket`, async () => {
      const r = await queryJson(colony, "query", "metrics", service, "--percentile", percentile, "--window", WINDOW, "--exemplars", "5");
      const p = await queryJson(colony, "query", "metrics", service, "--percentile", percentile, "--window", WINDOW);
      // The same percentile as GetPercentile's.
      expect(r.value).toBe(p.value);
      expect(r.sample_count).toBe(p.sample_count);
      expect(r.exemplars).toHaveLength(5);
      const answer = bucketIndex(r.value);
      expect(r.bucket_low_ns).toBeLessThan(r.value);
      expect(r.bucket_high_ns).toBeGreaterThanOrEqual(r.value);
      for (const e of r.exemplars) {
        const [span] = await sqlRows(
          colony,
          `SELECT duration_ns, kind, service_name, ${epochMicros("start_time")} AS start_us FROM spans
           WHERE trace_id = ${sqlQuote(e.trace_id)} AND span_id = ${sqlQuote(e.span_id)}`,
        );
        expect(span, `exemplar ${e.trace_id}/${e.span_id} is not a stored span`).toBeDefined();
        expect(span).toMatchObject({ duration_ns: e.duration_ns, kind: "SERVER", service_name: service });
        // JSON times are milliseconds; the store's are microseconds.
        expect(Math.abs(new Date(e.timestamp).getTime() - span.start_us / 1000)).toBeLessThan(1);
        expect(bucketIndex(span.duration_ns) - answer).toBe(e.bucket_offset);
      }
      // The answer's bucket first: as many of its spans as the window holds, up to 5.
      const [inBucket] = await sqlRows(
        colony,
        `SELECT count(*) AS n FROM spans WHERE service_name = ${sqlQuote(service)} AND kind = 'SERVER'
           AND duration_ns > ${r.bucket_low_ns} AND duration_ns <= ${r.bucket_high_ns}`,
      );
      const inAnswer = r.exemplars.filter((e: any) => e.bucket_offset === 0);
      expect(inAnswer.length).toBe(Math.min(5, inBucket.n));
      for (const e of inAnswer) expect(e.duration_ns > r.bucket_low_ns && e.duration_ns <= r.bucket_high_ns).toBe(true);
      const distances = r.exemplars.map((e: any) => Math.abs(e.bucket_offset));
      expect(distances).toEqual([...distances].sort((a, b) => a - b));
    });
  }

  it("fills up from the nearest buckets when the answer's bucket holds fewer than asked", async () => {
    const r = await queryJson(colony, "query", "metrics", "payments", "--percentile", "99.9", "--window", WINDOW, "--exemplars", "100");
    expect(r.exemplars.length).toBeGreaterThan(4);
    expect(r.exemplars.length).toBeLessThanOrEqual(100);
    expect(new Set(r.exemplars.map((e: any) => `${e.trace_id}/${e.span_id}`)).size).toBe(r.exemplars.length);
    expect(r.exemplars.some((e: any) => e.bucket_offset !== 0)).toBe(true);
  });

  it("the table shows trace ids to open with coral query trace", async () => {
    const r = await coral("query", "metrics", "payments", "--window", WINDOW, "--exemplars", "2");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [header, ...lines] = r.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^TRACE_ID\s+DURATION\s+TIMESTAMP\s+BUCKET_OFFSET$/);
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^[0-9a-f]{32}\s/);
  });

  it("an unknown service or metric is not_found, as for the percentile", async () => {
    const svc = await coral("query", "metrics", "nope", "--exemplars", "3");
    expect(svc.code).toBe(1);
    expect(svc.stderr).toMatch(/service "nope" not found/);
    const metric = await coral("query", "metrics", "payments", "--metric", "nope", "--exemplars", "3");
    expect(metric.code).toBe(1);
    expect(metric.stderr).toMatch(/metric "nope" not found/);
  });

  for (const [value, message] of [
    ["0", /--exemplars: must be in 1\.\.100; got 0/],
    ["101", /--exemplars: must be in 1\.\.100; got 101/],
    ["2.5", /--exemplars: "2\.5" is not an integer/],
    ["-1", /--exemplars: must be in 1\.\.100; got -1/],
    ["many", /--exemplars: /],
  ] as const) {
    it(`--exemplars ${value} is a usage error that names the flag`, async () => {
      const r = await coral("query", "metrics", "payments", "--exemplars", value);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe("");
    });
  }

  it("--exemplars does not combine with --error-rate or --by", async () => {
    for (const other of [["--error-rate"], ["--by", "http.route"]]) {
      const r = await coral("query", "metrics", "payments", "--exemplars", "3", ...other);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/choose one of|does not apply/);
    }
  });

  it("without --exemplars, -o json is byte for byte the percentile's answer as before", async () => {
    const r = await coral("query", "metrics", "payments", "--window", WINDOW, "-o", "json");
    expect(r.code).toBe(0);
    const { value, sample_count } = JSON.parse(r.stdout);
    expect(r.stdout).toBe(`${JSON.stringify({ value, unit: "nanoseconds", sample_count }, null, 2)}\n`);
  });
});

describe("the get_exemplars MCP tool", () => {
  let client: Client;
  beforeAll(async () => {
    client = new Client({ name: "coral-exemplars", version: "1" });
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" };
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [join(root, "bin/coral.cjs"), "mcp", "--colony", colony.addr], cwd: root, env, stderr: "ignore" }));
  });
  afterAll(async () => {
    await client?.close();
  });

  const call = async (args: Record<string, unknown>) => {
    const r = (await client.callTool({ name: "get_exemplars", arguments: args })) as { content: { text: string }[]; isError?: boolean };
    return { text: r.content.map((c) => c.text).join("\n"), isError: r.isError === true };
  };

  it("answers with the exemplars' trace ids", async () => {
    const r = await call({ service: "payments", exemplars: 3, window: WINDOW, output: "json" });
    expect(r.isError).toBe(false);
    const answer = JSON.parse(r.text);
    expect(answer.exemplars).toHaveLength(3);
    for (const e of answer.exemplars) expect(e.trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  for (const [value, message] of [
    [0, /exemplars: must be in 1\.\.100; got 0/],
    [101, /exemplars: must be in 1\.\.100; got 101/],
    [2.5, /exemplars: expected an integer, got 2\.5/],
  ] as const) {
    it(`exemplars ${value} is refused with a message naming the argument`, async () => {
      const r = await call({ service: "payments", exemplars: value });
      expect(r.isError).toBe(true);
      expect(r.text).toMatch(message);
      expect(r.text).not.toMatch(/\n\s+at /);
    });
  }
});

// proto3 sends exemplars: 0 as an absent field; the colony words it by the field's bounds, as the
// CLI and MCP do, not as a missing argument.
describe("GetExemplars with exemplars 0, through the API and the SDK", () => {
  it("the RPC refuses it by its bounds (invalid_argument)", async () => {
    const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    const err = await failureOf(client.getExemplars({ service: "payments", exemplars: 0 }));
    expect(err).toMatchObject({ code: Code.InvalidArgument, message: "exemplars must be in 1..100; got 0" });
  });

  it("a script's coral.metrics.getExemplars(service, 0) gets the same words", async () => {
    const script = `import * as coral from "@coral/sdk";
try { await coral.metrics.getExemplars("payments", 0); console.log("answered"); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = await runCoral(["run", "--colony", colony.addr, "-"], { input: script });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.code).toBe("invalid_argument");
    expect(got.message).toMatch(/exemplars must be in 1\.\.100; got 0/);
    expect(got.message).not.toMatch(/required/);
  });
});
