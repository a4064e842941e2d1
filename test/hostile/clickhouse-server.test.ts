// A colony on a ClickHouse server that misbehaves, and a password file that is not a file: the
// colony neither hangs nor dies. The server is a stand-in on the HTTP interface in this process
// (the machine has no ClickHouse server): it answers like an empty ClickHouse until told to stall
// reads (never answering, or answering half), inserts, or everything.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { HealthCheckResponse_ServingStatus, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { runCoral, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { failureOf } from "../helpers/rpc.js";

type Stall = "none" | "reads" | "half-reads" | "inserts" | "everything";

interface Seen {
  sql: string;
  params: URLSearchParams;
  /** When the client closed the connection while the request was unanswered. */
  abandoned: boolean;
}

/** A stand-in for ClickHouse's HTTP interface: 200 and no rows to everything, unless stalling. */
async function standIn(): Promise<{ server: Server; port: number; stall: { mode: Stall }; seen: Seen[] }> {
  const stall = { mode: "none" as Stall };
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const params = new URL(req.url ?? "/", "http://x").searchParams;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      // Inserts carry the statement in the URL and rows in the body; queries the statement in the body.
      const sql = params.get("query") ?? Buffer.concat(chunks).toString("utf8");
      const entry: Seen = { sql, params, abandoned: false };
      seen.push(entry);
      // The typed reads' queries carry the read guard's settings.
      const typedRead = params.has("cancel_http_readonly_queries_on_client_close");
      const insert = /^\s*INSERT/i.test(sql);
      const mode = stall.mode;
      const stalled = mode === "everything" || (mode === "inserts" && insert) || ((mode === "reads" || mode === "half-reads") && typedRead);
      if (!stalled) {
        res.writeHead(200, { "content-type": "text/plain; charset=UTF-8", "x-clickhouse-summary": "{}" }).end();
        return;
      }
      res.on("close", () => (entry.abandoned = !res.writableEnded));
      if (mode === "half-reads") {
        // Headers and part of the first line, then nothing.
        res.writeHead(200, { "content-type": "text/plain; charset=UTF-8" });
        res.write('["name","namespace","region"]\n["Str');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port, stall, seen };
}

const oneSpan = () =>
  JSON.stringify({
    resourceSpans: [{
      resource: { attributes: [{ key: "service.name", value: { stringValue: "checkout" } }] },
      scopeSpans: [{ spans: [{ traceId: "a".repeat(32), spanId: "b".repeat(16), name: "GET /", kind: 2, startTimeUnixNano: `${Date.now() * 1e6}`, endTimeUnixNano: `${Date.now() * 1e6 + 5e6}` }] }],
    }],
  });

async function postSpan(colony: SpawnedColony): Promise<{ status: number; body: string; retryAfter: string | null }> {
  const r = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/json" }, body: oneSpan() });
  return { status: r.status, body: await r.text(), retryAfter: r.headers.get("retry-after") };
}

// The describes below wait mostly on timeouts (the ClickHouse client's 30 s request timeout among
// them) and share nothing, so they run side by side; tests within one run in order. Concurrent
// tests take `expect` from their context: the global one cannot tell them apart (expect.poll refuses).
describe("--clickhouse-password-file that is not a password file", { concurrent: true }, () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "coral-ch-pwfile-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("fails at once with one line and a non-zero exit: a FIFO nobody writes to, a huge file, a directory, /dev/zero", async ({ expect }) => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const huge = join(dir, "huge");
    writeFileSync(huge, Buffer.alloc(64 * 2 ** 20, "p"));
    const directory = join(dir, "d");
    mkdirSync(directory);
    const cases: [string, string][] = [
      [fifo, "is a pipe nothing was written to within 2 s; it should hold the password"],
      [huge, "is larger than 4 KiB; it should hold only the password"],
      [directory, "is a directory, not a file"],
      ["/dev/zero", "is larger than 4 KiB; it should hold only the password"],
    ];
    const results = await Promise.all(
      cases.map(([file]) => runCoral(["colony", "start", "--store", "clickhouse://coral@127.0.0.1:9/coral", "--clickhouse-password-file", file, "--listen", "127.0.0.1:0", "--otlp", "off"])),
    );
    results.forEach((r, i) => {
      const [file, why] = cases[i]!;
      expect(r.code, r.stderr).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines[0]).toContain(`--clickhouse-password-file: ${file} ${why}`);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stdout).not.toMatch(/listening/);
    });
  }, 60_000);
});

describe("a ClickHouse server that stalls", { concurrent: true }, () => {
  let ch: Awaited<ReturnType<typeof standIn>>;
  let colony: SpawnedColony;
  beforeAll(async () => {
    ch = await standIn();
    colony = await spawnColony({
      otlp: "127.0.0.1:0",
      extraArgs: ["--store", `clickhouse://coral@127.0.0.1:${ch.port}/coral`, "--query-timeout", "2s", "--retention", "0"],
      env: { CORAL_CLICKHOUSE_PASSWORD: "stand-in" },
    });
  }, 60_000);
  afterAll(async () => {
    ch.stall.mode = "none";
    await colony?.stop();
    ch?.server.close();
  });

  const query = () => createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
  const health = async () => (await createClient(Health, transports["Connect over HTTP/2"]!(colony.baseUrl)).check({})).status;

  it.sequential("a read the server never answers, or answers half of, ends at --query-timeout; the read is cancelled on the server; everything else is served", async ({ expect }) => {
    for (const mode of ["reads", "half-reads"] as const) {
      ch.stall.mode = mode;
      const before = ch.seen.length;
      const stalled = failureOf(query().listServices({}));
      // While the read hangs: health checks and OTLP ingest (inserts are answered) are served.
      expect(await health()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      expect((await postSpan(colony)).status).toBe(200);
      const e = await stalled;
      expect(e.code, `${mode}: ${e.message}`).toBe(Code.DeadlineExceeded);
      expect(e.message).toMatch(/^the query ran longer than the 2000 ms query timeout \(--query-timeout\) and was cancelled — /);
      // The colony closed the stalled request and told the server to KILL that query.
      const read = ch.seen.slice(before).find((s) => s.params.has("cancel_http_readonly_queries_on_client_close"))!;
      expect(read.params.get("max_execution_time")).toMatch(/^[12](\.\d+)?$/);
      await expect.poll(() => read.abandoned, { timeout: 10_000 }).toBe(true);
      const id = read.params.get("query_id")!;
      await expect.poll(() => ch.seen.some((s) => /^KILL QUERY WHERE query_id IN/.test(s.sql) && (s.params.get("param_ids") ?? "").includes(id)), { timeout: 10_000 }).toBe(true);
    }
    ch.stall.mode = "none";
    expect((await query().listServices({})).services).toEqual([]);
  }, 120_000);

  it.sequential("an insert the server never answers gets OTLP clients a retryable 503 (after the client's request timeout); queries are served meanwhile", async ({ expect }) => {
    ch.stall.mode = "inserts";
    const stalled = postSpan(colony);
    expect(await health()).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await query().listServices({})).services).toEqual([]);
    const r = await stalled;
    expect(r.status, r.body).toBe(503);
    expect(r.retryAfter).not.toBeNull();
    expect(r.body).toMatch(/could not store the data: Timeout error/);
    ch.stall.mode = "none";
    expect((await postSpan(colony)).status).toBe(200);
    expect(colony.proc.exitCode).toBeNull();
  }, 120_000);
});

describe("a ClickHouse server that never answers at all", { concurrent: true }, () => {
  it("a colony start gives up after the request timeout with one line and exit 1", async ({ expect }) => {
    const ch = await standIn();
    ch.stall.mode = "everything";
    try {
      const r = await runCoral(["colony", "start", "--store", `clickhouse://coral@127.0.0.1:${ch.port}/coral`, "--listen", "127.0.0.1:0", "--otlp", "off"], {
        env: { CORAL_CLICKHOUSE_PASSWORD: "stand-in" },
      });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(`cannot reach ClickHouse at http://127.0.0.1:${ch.port}: timed out`);
      expect(r.stderr).not.toContain("stand-in");
    } finally {
      ch.server.close();
      ch.server.closeAllConnections();
    }
  }, 120_000);
});
