// `coral query …` exactly as the RFD writes it, against a real demo colony process, in
// every output format; plus the failures a user runs into.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCoral, spawnColony, STORE_ENGINE, type SpawnedColony } from "../helpers/colony.js";
import { exactQuantile } from "../helpers/engine-sql.js";

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

const env = () => ({ CORAL_COLONY_ADDR: colony.addr });

/** The RFD's commands, verbatim (without the leading `coral`). */
const rfdCommands: Record<string, string[]> = {
  services: ["query", "services"],
  percentile: ["query", "metrics", "payments", "--metric", "http.server.duration", "--percentile", "99"],
  errorRate: ["query", "metrics", "payments", "--error-rate", "--window", "5m"],
  slow: ["query", "traces", "payments", "--slow", "--threshold", "500ms", "--limit", "10"],
  errors: ["query", "traces", "payments", "--errors", "--window", "1h"],
  sql: ["query", "sql", "SELECT service_name, AVG(p99_duration_ns) FROM service_summary GROUP BY service_name"],
};

function parseCsv(text: string): string[][] {
  return text
    .trimEnd()
    .split("\r\n")
    .map((line) => line.split(","));
}

describe("coral query, as the RFD writes it", () => {
  for (const [name, args] of Object.entries(rfdCommands)) {
    for (const output of ["table", "wide", "json", "csv"]) {
      it(`${name} --output ${output}`, async () => {
        const r = await runCoral([...args, "--output", output], { env: env() });
        expect(r.stderr.replace(/^\(.*\)\n$/, "")).toBe("");
        expect(r.code).toBe(0);
        expect(r.stdout.length).toBeGreaterThan(0);
        if (output === "json") expect(() => JSON.parse(r.stdout)).not.toThrow();
        if (output === "csv") {
          const rows = parseCsv(r.stdout);
          expect(rows.length).toBeGreaterThan(0);
          expect(new Set(rows.map((row) => row.length)).size).toBe(1);
        }
        if (output === "table" || output === "wide") expect(r.stdout).not.toMatch(/\x1b\[/);
      });
    }
  }

  it("lists the demo services in an aligned table", async () => {
    const r = await runCoral(rfdCommands.services, { env: env() });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+NAMESPACE\s+REGION\s+INSTANCES$/);
    const names = lines.slice(1).map((l) => l.split(/\s+/)[0]);
    expect(names).toEqual(expect.arrayContaining(["payments", "orders", "inventory", "legacy-api"]));
    // Aligned: every row is as wide as the header once trailing spaces are trimmed off the
    // right-aligned last column.
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
  });

  it("prints the percentile in human units, and raw nanoseconds in json", async () => {
    const table = await runCoral(rfdCommands.percentile, { env: env() });
    // The unit is in the value ("808.5ms"), so the table has no UNIT column; json keeps it.
    expect(table.stdout).toMatch(/^\s*VALUE\s+SAMPLES\n\s*\d+(\.\d+)?(ms|s)\s+\d+\n$/);
    const json = JSON.parse((await runCoral([...rfdCommands.percentile, "-o", "json"], { env: env() })).stdout);
    expect(json.unit).toBe("nanoseconds");
    expect(typeof json.value).toBe("number");
    expect(json.value).toBeGreaterThan(100_000_000); // payments' p99 is hundreds of ms
    expect(json.sample_count).toBeGreaterThan(0);
  });

  it("the percentile on the CLI is within 1% of the exact percentile of the same spans", async () => {
    // A window longer than the demo's history, so both sides see every span: the summaries
    // count whole minutes, an SQL time filter would cut the first one.
    const cli = JSON.parse((await runCoral([...rfdCommands.percentile, "--window", "24h", "-o", "json"], { env: env() })).stdout);
    const exact = JSON.parse(
      (
        await runCoral(
          [
            "query",
            "sql",
            `SELECT ${exactQuantile("duration_ns", 0.99)} AS p99 FROM spans WHERE service_name = 'payments' AND kind = 'SERVER'`,
            "-o",
            "json",
          ],
          { env: env() },
        )
      ).stdout,
    );
    const p99 = Number(exact.rows[0].p99);
    expect(Math.abs(cli.value - p99) / p99).toBeLessThan(0.01);
  });

  it("error rate: rate with the counts it came from", async () => {
    const json = JSON.parse((await runCoral([...rfdCommands.errorRate, "-o", "json"], { env: env() })).stdout);
    expect(json.rate).toBeGreaterThanOrEqual(0);
    expect(json.rate).toBeLessThanOrEqual(1);
    expect(json.rate).toBeCloseTo(json.total_count ? json.error_count / json.total_count : 0, 10);
    const table = await runCoral(rfdCommands.errorRate, { env: env() });
    expect(table.stdout).toMatch(/\d+\.\d\d%/);
  });

  it("slow traces: at most 10, all at least 500ms, slowest first", async () => {
    const json = JSON.parse((await runCoral([...rfdCommands.slow, "-o", "json"], { env: env() })).stdout);
    const traces = json.traces as { duration_ns: number; trace_id: string; service: string }[];
    expect(traces.length).toBeGreaterThan(0);
    expect(traces.length).toBeLessThanOrEqual(10);
    expect(json.total_count).toBeGreaterThanOrEqual(traces.length);
    for (const t of traces) {
      expect(t.duration_ns).toBeGreaterThanOrEqual(500_000_000);
      expect(t.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(t.service).toBe("payments");
    }
    const durations = traces.map((t) => t.duration_ns);
    expect(durations).toEqual([...durations].sort((a, b) => b - a));
  });

  it("traces: the default table has the main columns and ages; -o wide has every column and ISO times", async () => {
    const table = (await runCoral(rfdCommands.slow, { env: env() })).stdout.trimEnd().split("\n");
    expect(table[0]).toMatch(/^TRACE_ID\s+DURATION\s+TIMESTAMP\s+ROOT_NAME\s+SPANS\s+ERROR$/);
    expect(table[1]).toMatch(/^[0-9a-f]{32}\s+\d+\.\d+s\s+\d+(s|m|h\d+m|d\d+h) ago\s/);
    const wide = (await runCoral([...rfdCommands.slow, "-o", "wide"], { env: env() })).stdout.trimEnd().split("\n");
    expect(wide[0]).toMatch(/^TRACE_ID\s+DURATION\s+TIMESTAMP\s+SERVICE\s+ROOT_NAME\s+SPANS\s+ERROR$/);
    expect(wide[1]).toMatch(/\s\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+payments\s/);
    const csv = (await runCoral([...rfdCommands.slow, "-o", "csv"], { env: env() })).stdout.split("\r\n");
    expect(csv[0]).toBe("trace_id,duration_ns,timestamp,service,root_name,span_count,error");
  });

  it("a table on an 80-column terminal fits it: text is cut with …, trace ids never", async () => {
    // A pty, as a user's terminal; `script` gives the command one.
    const { execFileSync } = await import("node:child_process");
    const bin = new URL("../../bin/coral.cjs", import.meta.url).pathname;
    const cmd = [process.execPath, bin, ...rfdCommands.slow, "--colony", colony.addr].map((a) => `'${a}'`).join(" ");
    const out = execFileSync("script", ["-qec", `stty cols 80; ${cmd}`, "/dev/null"], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
    const lines = out.replace(/\r/g, "").trimEnd().split("\n").filter((l) => /^[0-9a-f]{32}\s/.test(l));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(lines.some((l) => l.includes("…"))).toBe(true);
  });

  it("error traces are failed traces", async () => {
    const json = JSON.parse((await runCoral([...rfdCommands.errors, "-o", "json"], { env: env() })).stdout);
    expect(json.traces.length).toBeGreaterThan(0);
    for (const t of json.traces) expect(t.error).toBe(true);
  });

  it("sql: json rows are objects keyed by column name; csv has a header", async () => {
    // The engine names a column the query leaves unnamed: DuckDB lower-cases the function, ClickHouse keeps it as written.
    const avgColumn = STORE_ENGINE === "clickhouse" ? "AVG(p99_duration_ns)" : "avg(p99_duration_ns)";
    const json = JSON.parse((await runCoral([...rfdCommands.sql, "-o", "json"], { env: env() })).stdout);
    expect(json.columns.map((c: { name: string }) => c.name)).toEqual(["service_name", avgColumn]);
    expect(json.rows.length).toBeGreaterThanOrEqual(4);
    expect(json.truncated).toBe(false);
    const csv = parseCsv((await runCoral([...rfdCommands.sql, "-o", "csv"], { env: env() })).stdout);
    expect(csv[0]).toEqual(["service_name", avgColumn]);
  });

  it("sql --stream prints one JSON object per line", async () => {
    const r = await runCoral(["query", "sql", "--stream", "SELECT generate_series AS n FROM generate_series(0, 2499)", "-o", "json"], { env: env() });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2500);
    expect(JSON.parse(lines[2499])).toEqual({ n: 2499 });
  });

  it("sql --stream renders csv and table across batches, typed cells included", async () => {
    // generate_series and CAST … AS BOOLEAN mean the same on both engines (ClickHouse's comparisons are UInt8).
    const sql =
      "SELECT generate_series AS n, 'r' || generate_series AS s, CAST(generate_series % 2 = 0 AS BOOLEAN) AS even, CASE WHEN generate_series = 1 THEN NULL ELSE generate_series / 2 END AS half FROM generate_series(0, 19999)";
    const csv = await runCoral(["query", "sql", "--stream", sql, "-o", "csv"], { env: env() });
    expect(csv.code).toBe(0);
    const rows = parseCsv(csv.stdout);
    expect(rows[0]).toEqual(["n", "s", "even", "half"]);
    expect(rows).toHaveLength(20001);
    expect(rows[2]).toEqual(["1", "r1", "false", ""]);
    expect(rows[20000]).toEqual(["19999", "r19999", "false", "9999.5"]);
    const table = await runCoral(["query", "sql", "--stream", sql, "--max-rows", "3"], { env: env() });
    expect(table.code).toBe(0);
    expect(table.stdout.trimEnd().split("\n")).toHaveLength(4);
    expect(table.stdout).toContain("r2");
    expect(table.stderr).toContain("truncated");
  });

  it("--colony and --token flags work without the environment", async () => {
    const r = await runCoral(["query", "services", "--colony", colony.addr, "-o", "json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).services.length).toBeGreaterThanOrEqual(4);
  });
});

describe("coral query, when things go wrong", () => {
  it("unknown service: NotFound naming it and how to list services, exit 1", async () => {
    const r = await runCoral(["query", "metrics", "paymnts"], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('service "paymnts" not found');
    expect(r.stderr).toContain("coral query services");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("percentile outside (0, 100] is a usage error, exit 2", async () => {
    for (const p of ["0", "101", "-5", "abc"]) {
      const r = await runCoral(["query", "metrics", "payments", "--percentile", p], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--percentile");
    }
  });

  it("a fraction as --percentile (the SDK's style) is answered, with a note on what was asked", async () => {
    const r = await runCoral(["query", "metrics", "payments", "--percentile", "0.99", "-o", "json"], { env: env() });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("(note: --percentile 0.99 is the 0.99th percentile; for p99 write 99)\n");
    const p99 = await runCoral(["query", "metrics", "payments", "--percentile", "99", "-o", "json"], { env: env() });
    expect(p99.stderr).toBe("");
    expect(JSON.parse(r.stdout).value).toBeLessThan(JSON.parse(p99.stdout).value);
  });

  it("a value too large for the request is a usage error naming the flag, exit 2", async () => {
    for (const [args, message] of [
      [["service", "payments", "--window", "99999999999999999999999d"], '--window: "99999999999999999999999d" is too long a duration'],
      [["traces", "payments", "--limit", "99999999999999999999"], '--limit: "99999999999999999999" is out of range (at most 2,147,483,647)'],
    ] as const) {
      const r = await runCoral(["query", ...args], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });

  it("malformed duration names the flag, exit 2", async () => {
    const r = await runCoral(["query", "traces", "payments", "--threshold", "5xs"], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--threshold");
    expect(r.stderr).toContain('"5xs" is not a duration');
    expect(r.stdout).toBe("");
  });

  it("unknown flag and wrong output format are usage errors", async () => {
    expect((await runCoral(["query", "services", "--bogus"], { env: env() })).code).toBe(2);
    const r = await runCoral(["query", "services", "--output", "yaml"], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--output");
  });

  it("flags of another variant are refused, not ignored", async () => {
    const r = await runCoral(["query", "metrics", "payments", "--error-rate", "--percentile", "99"], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--percentile does not apply with --error-rate");
    const both = await runCoral(["query", "traces", "payments", "--slow", "--errors"], { env: env() });
    expect(both.code).toBe(2);
  });

  it("colony unreachable: one line naming the address and how to start one", async () => {
    const r = await runCoral(["query", "services", "--colony", "127.0.0.1:9"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "coral: cannot reach colony at 127.0.0.1:9 (connection refused) — start one with: coral colony start\n",
    );
  });

  it("the default address is 127.0.0.1:9090", async () => {
    const r = await runCoral(["query", "services"]);
    // Whatever runs on that port here (a colony, another server, nothing), a failure names it.
    if (r.code !== 0) expect(r.stderr).toContain("127.0.0.1:9090");
  });

  it("https:// to a colony (plain HTTP): one line saying so, exit 1", async () => {
    const r = await runCoral(["query", "services", "--colony", `https://${colony.addr}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`coral: cannot talk to ${colony.addr}: TLS failed: colonies serve plain HTTP, write --colony HOST:PORT\n`);
  });

  it("a token HTTP cannot carry is a usage error, for queries and for the colony itself", async () => {
    for (const args of [["query", "services", "--token", "a b"], ["colony", "start", "--db", ":memory:", "--token", "t\u00e9"]]) {
      const r = await runCoral(args, { env: env() });
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toBe("coral: --token: a token is visible ASCII without spaces (e.g. from `openssl rand -hex 16`)\n");
    }
  });

  it("a server that is not a colony: one line naming the address, exit 1", async () => {
    const servers = [
      createServer((_req, res) => res.writeHead(404, { "content-type": "text/plain" }).end("not found")),
      createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html></html>")),
    ];
    try {
      for (const [server, why] of [
        [servers[0]!, "HTTP 404"],
        [servers[1]!, "unsupported content type text/html"],
      ] as const) {
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
        const r = await runCoral(["query", "services", "--colony", addr]);
        expect(r.code).toBe(1);
        expect(r.stderr).toBe(
          `coral: ${addr} did not answer as a Coral colony (${why}) — check --colony or CORAL_COLONY_ADDR, ` +
            "and that the colony runs this version of Coral\n",
        );
      }
    } finally {
      for (const server of servers) server.close();
    }
  });

  it("rejected SQL is a usage error (exit 2), not a crash", async () => {
    const r = await runCoral(["query", "sql", "DROP TABLE spans"], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("only SELECT");
    const still = await runCoral(["query", "sql", "SELECT count(*) AS n FROM spans", "-o", "json"], { env: env() });
    expect(JSON.parse(still.stdout).rows[0].n).toBeGreaterThan(0);
  });
});

describe("coral query against a colony with a token", () => {
  let secured: SpawnedColony;
  beforeAll(async () => {
    secured = await spawnColony({ token: "s3cret" });
  });
  afterAll(async () => {
    await secured?.stop();
  });

  it("wrong or missing token: Unauthenticated, exit 1, says how to pass one", async () => {
    for (const extra of [[], ["--token", "nope"]]) {
      const r = await runCoral(["query", "services", "--colony", secured.addr, ...extra]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("--token");
      expect(r.stderr).toContain("CORAL_TOKEN");
    }
  });

  it("right token from the flag or $CORAL_TOKEN", async () => {
    expect((await runCoral(["query", "services", "--colony", secured.addr, "--token", "s3cret"])).code).toBe(0);
    expect((await runCoral(["query", "services", "--colony", secured.addr], { env: { CORAL_TOKEN: "s3cret" } })).code).toBe(0);
  });
});
