// Tools for crash tests: a colony process that can be killed at any moment (including before it is
// ready), an OTLP load whose acknowledged requests are known exactly, and a look at a database file
// between runs that leaves the file as the next start will find it.
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import * as http from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { toJson } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DuckDBInstance } from "@duckdb/node-api";
import { encodeTraces } from "../../colony/demo/load.js";
import type { SpanRecord } from "../../colony/ingest/records.js";
import { prng } from "../../colony/demo/demo.js";
import { ExecuteQueryResponseSchema, QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { colonyPids, processLives } from "./colony.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** A seeded generator, so a failing run's kill points can be replayed from its seed. */
export const seededRandom = prng;

/**
 * A private copy of the CLI bundle (dist/cli, as built by the test run's global setup). Another test
 * run starting meanwhile rebuilds dist/cli from scratch, and a colony spawned in that gap would find
 * no bundle; the copy lives under the checkout so `@duckdb/node-api` still resolves from node_modules.
 * A copy taken during such a rebuild is incomplete: taken again until every chunk it imports is there.
 */
export async function snapshotCli(): Promise<{ bin: string; remove(): void }> {
  const dir = join(root, ".tmp", `crash-cli-${process.pid}`);
  const remove = () => rmSync(dir, { recursive: true, force: true });
  for (let attempt = 1; ; attempt++) {
    remove();
    mkdirSync(dir, { recursive: true });
    try {
      cpSync(join(root, "dist", "cli"), dir, { recursive: true });
      if (bundleComplete(dir)) return { bin: join(dir, "coral.mjs"), remove };
    } catch (err) {
      if (attempt >= 30) {
        remove();
        throw err;
      }
    }
    if (attempt >= 30) {
      remove();
      throw new Error(`dist/cli stayed incomplete for ${attempt} s (is a build failing?)`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function bundleComplete(dir: string): boolean {
  const files = [join(dir, "coral.mjs"), ...readdirSync(join(dir, "chunks")).filter((f) => f.endsWith(".mjs")).map((f) => join(dir, "chunks", f))];
  for (const file of files) {
    if (!existsSync(file)) return false;
    for (const [, rel] of readFileSync(file, "utf8").matchAll(/"(\.\/(?:chunks\/)?chunk-[A-Za-z0-9]+\.mjs)"/g)) {
      if (!existsSync(join(dirname(file), rel!))) return false;
    }
  }
  return true;
}

function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return env;
}

export interface KillableColony {
  proc: ChildProcess;
  /** Resolves when the colony prints its ready lines; rejects (with its stderr) if it exits first. */
  ready: Promise<{ addr: string; otlpUrl: string; readyMs: number }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /**
   * SIGKILL to both of the colony's processes (the supervisor and its worker, which holds the
   * database) at once, then waits until both are gone (the file lock with them).
   */
  kill(): Promise<void>;
}

/**
 * `coral colony start` on free ports; unlike spawnColony it hands over the process at once.
 * `storeArgs` replace `--db dbPath` (e.g. `--store chdb:DIR`).
 */
export function startKillableColony(bin: string, dbPath: string, storeArgs: string[] = ["--db", dbPath]): KillableColony {
  const t0 = performance.now();
  const proc = spawn(process.execPath, [bin, "colony", "start", "--listen", "127.0.0.1:0", "--otlp", "127.0.0.1:0", ...storeArgs], {
    cwd: root,
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  const ready = new Promise<{ addr: string; otlpUrl: string; readyMs: number }>((resolve, reject) => {
    const check = () => {
      const addr = /^colony listening on (\S+) /m.exec(stdout)?.[1];
      const otlp = /^otlp listening on (\S+)$/m.exec(stdout)?.[1];
      if (addr && otlp) {
        proc.stdout!.off("data", check);
        resolve({ addr, otlpUrl: `http://${otlp}`, readyMs: performance.now() - t0 });
      }
    };
    proc.stdout!.on("data", check);
    proc.once("error", reject);
    void exited.then(({ code, signal }) => reject(new Error(`colony exited (code ${code}, signal ${signal}) before it was ready:\n${stderr}`)));
  });
  ready.catch(() => {}); // a colony killed on purpose before it is ready rejects nobody's await
  return {
    proc,
    ready,
    exited,
    stderr: () => stderr,
    async kill() {
      const worker = colonyPids(proc.pid!)[1];
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      if (worker !== undefined) {
        try {
          process.kill(worker, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await exited;
      // Not this process's child: gone once /proc no longer lists it (or lists a zombie, which holds no lock).
      while (worker !== undefined && processLives(worker)) await new Promise((r) => setTimeout(r, 5));
      // A worker spawned between the listing and the kill ends by itself, at once, when it finds its supervisor gone.
    },
  };
}

/**
 * Kills `c` `random() * startMs` ms into its start (`startMs`: how long a whole start took), and
 * says when, for the episode's log.
 */
export async function killIntoStart(c: KillableColony, startMs: number, random: () => number): Promise<string> {
  let ready = false;
  c.ready.then(() => (ready = true), () => {});
  const after = random() * startMs;
  await new Promise((r) => setTimeout(r, after));
  await c.kill();
  return `${after.toFixed(0)} ms into a start${ready ? " (it was ready)" : ""}`;
}

/**
 * Kills `c` at the `writes`-th time its database's WAL is seen to grow by at least `minBytes`
 * (polled every 2 ms). At start-up that is rollups being rebuilt: before recovery only migrate's
 * ALTERs write, a few hundred bytes each. One large commit may show as several writes, so the kill
 * can also land while a commit is half written. Resolves false if the colony became ready (or
 * exited) first.
 */
export async function killAtWalWrite(c: KillableColony, dbPath: string, writes: number, minBytes = 1024): Promise<boolean> {
  const size = () => {
    try {
      return statSync(`${dbPath}.wal`).size;
    } catch {
      return 0;
    }
  };
  let ready = false;
  c.ready.then(() => (ready = true), () => {});
  let last = size();
  let seen = 0;
  while (!ready && c.proc.exitCode === null && c.proc.signalCode === null) {
    const now = size();
    // A WAL that shrank was checkpointed into the file on open: count growth from there.
    if (now < last || now - last < minBytes) last = Math.min(last, now);
    else {
      last = now;
      if (++seen >= writes) {
        await c.kill();
        return true;
      }
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await c.kill();
  return false;
}

/** ExecuteQuery over Connect; rows as JSON values (a query also settles the colony's rollups first). */
export async function querySql(addr: string, text: string): Promise<{ rows: any[][]; truncated: boolean }> {
  const client = createClient(QueryService, createConnectTransport({ baseUrl: `http://${addr}`, httpVersion: "1.1" }));
  const json = toJson(ExecuteQueryResponseSchema, await client.executeQuery({ sql: text })) as { rows?: any[][]; truncated?: boolean };
  return { rows: json.rows ?? [], truncated: json.truncated ?? false };
}

/**
 * Reads a database file the way the next start will find it, leaving the file as it is.
 * `access: "read-only"` (default) opens it read-only, so DuckDB replays the WAL in memory and writes
 * nothing (no checkpoint that would spare the next start its replay). `access: "copy"` opens a copy
 * (with its WAL) read-write instead: a read-only open refuses to replay a WAL whose checkpoint a kill
 * interrupted, which the next start (read-write) completes.
 */
export async function peekDatabase<T>(dbPath: string, sql: string, o: { access?: "read-only" | "copy" } = {}): Promise<T[][]> {
  const copy = o.access === "copy" ? `${dbPath}.peek` : undefined;
  if (copy) {
    copyFileSync(dbPath, copy);
    if (existsSync(`${dbPath}.wal`)) copyFileSync(`${dbPath}.wal`, `${copy}.wal`);
  }
  try {
    const instance = await DuckDBInstance.create(copy ?? dbPath, copy ? {} : { access_mode: "READ_ONLY" });
    try {
      const conn = await instance.connect();
      try {
        return (await conn.runAndReadAll(sql)).getRowsJS() as T[][];
      } finally {
        conn.closeSync();
      }
    } finally {
      instance.closeSync();
    }
  } finally {
    if (copy) {
      rmSync(copy, { force: true });
      rmSync(`${copy}.wal`, { force: true });
    }
  }
}

export interface LoadRequest {
  spans: number;
  /** Answered 200: every span of it must be stored. */
  acked: boolean;
}

/**
 * OTLP/HTTP protobuf traffic with ids that say where they came from: a span id starts with the
 * 8 hex digits of its request (round + 1, then request number), so one GROUP BY tells which requests
 * are stored and whether whole. Each trace: frontend SERVER → CLIENT → orders SERVER (+ INTERNAL)
 * → payments SERVER, some failing. Sends until `stop()` or until the colony stops answering.
 */
export class AckedLoad {
  readonly requests = new Map<string, LoadRequest>();
  /** Requests answered 200 with spans refused (partial success). */
  readonly partial: string[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];
  private readonly agent: http.Agent;

  constructor(
    private readonly otlpUrl: string,
    private readonly round: number,
    private readonly random: () => number,
    private readonly o: {
      tracesPerRequest: number;
      concurrency: number;
      /** Spans per second, all loops together. */
      rate: number;
      /** Start of a trace, in ms since the epoch, given the time now. */
      startAt: (nowMs: number) => number;
    },
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  }

  start(): void {
    for (let i = 0; i < this.o.concurrency; i++) this.loops.push(this.loop());
  }

  /** Stops sending; resolves when every request has its answer (or its connection died). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    this.agent.destroy();
  }

  get ackedSpans(): number {
    let n = 0;
    for (const r of this.requests.values()) if (r.acked) n += r.spans;
    return n;
  }

  private nextRequest = 0;
  /** When the next request may go, for the rate. */
  private sendAt = 0;

  private allocate(): string {
    // Round + 1: an all-zero trace or span id is invalid in OTLP, and round 0's first would be one.
    return (this.round + 1).toString(16).padStart(2, "0") + (this.nextRequest++).toString(16).padStart(6, "0");
  }

  private async loop(): Promise<void> {
    let prefix = this.allocate();
    let carried: SpanRecord[] = [];
    while (!this.stopped) {
      // Reserved now so roots held back for it can take its ids (ids say which request carried a span).
      const next = this.allocate();
      const made = this.makeSpans(prefix, next, carried);
      carried = made.carry;
      const request: LoadRequest = { spans: made.spans.length, acked: false };
      this.requests.set(prefix, request);
      const body = encodeTraces(groupByService(made.spans));
      const now = performance.now();
      const wait = this.sendAt - now;
      this.sendAt = Math.max(this.sendAt, now) + (made.spans.length / this.o.rate) * 1000;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        const { status, bytes } = await this.post(body);
        if (status !== 200) throw new Error(`OTLP answered ${status}`);
        request.acked = true;
        // A body means partial success: some spans refused, which this traffic never warrants.
        if (bytes > 0) this.partial.push(prefix);
      } catch {
        // Refused or cut off (the colony was killed): no promise was made for this request.
        this.stopped = true;
      }
      prefix = next;
    }
  }

  private post(body: Buffer): Promise<{ status: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${this.otlpUrl}/v1/traces`,
        { method: "POST", agent: this.agent, headers: { "content-type": "application/x-protobuf", "content-length": body.length } },
        (res) => {
          let bytes = 0;
          res.on("data", (d: Buffer) => (bytes += d.length));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  private makeSpans(prefix: string, next: string, carried: SpanRecord[]): { spans: SpanRecord[]; carry: SpanRecord[] } {
    const rnd = this.random;
    const spans = [...carried];
    const carry: SpanRecord[] = [];
    let n = 0;
    const mk = (p: Omit<SpanRecord, "spanId" | "statusCode" | "httpStatusCode" | "attributes"> & Partial<SpanRecord>): SpanRecord => ({
      spanId: prefix + (n++).toString(16).padStart(8, "0"), statusCode: "UNSET", httpStatusCode: 200, attributes: {}, ...p,
    });
    const now = Date.now();
    for (let t = 0; t < this.o.tracesPerRequest; t++) {
      const traceId = `${prefix}${t.toString(16).padStart(8, "0")}${"0".repeat(16)}`;
      const start = this.o.startAt(now);
      const total = Math.round(2e6 + rnd() * rnd() * 900e6);
      const fail = rnd();
      // Every eighth root travels in the next request: the trace's row then merges from two commits
      // (or, if that request is never stored, is rebuilt from the spans that are).
      const late = t % 8 === 7;
      const rootId = late ? next + (0x80000000 + carry.length).toString(16) : prefix + (n++).toString(16).padStart(8, "0");
      const root: SpanRecord = {
        traceId, spanId: rootId, parentSpanId: null, serviceName: "frontend", name: "GET /checkout", kind: "SERVER",
        startTimeMs: start, durationNs: total, statusCode: "UNSET", httpStatusCode: 200, attributes: {},
      };
      const call = mk({ traceId, parentSpanId: root.spanId, serviceName: "frontend", name: "POST /orders", kind: "CLIENT", startTimeMs: start + 0.01, durationNs: total - 20_000 });
      const orders = mk({ traceId, parentSpanId: call.spanId, serviceName: "orders", name: "POST /orders", kind: "SERVER", startTimeMs: start + 0.02, durationNs: total - 40_000, httpStatusCode: fail < 0.03 ? 503 : 200 });
      const query = mk({ traceId, parentSpanId: orders.spanId, serviceName: "orders", name: "SELECT orders", kind: "INTERNAL", startTimeMs: start + 0.03, durationNs: Math.round((total - 60_000) * rnd()), httpStatusCode: null });
      const pay = mk({ traceId, parentSpanId: orders.spanId, serviceName: "payments", name: "POST /charge", kind: "SERVER", startTimeMs: start + 0.04, durationNs: Math.round((total - 80_000) * rnd()), statusCode: fail > 0.95 ? "ERROR" : "OK" });
      spans.push(call, orders, query, pay);
      (late ? carry : spans).push(root);
    }
    return { spans, carry };
  }
}

function groupByService(spans: SpanRecord[]) {
  const by = new Map<string, SpanRecord[]>();
  for (const s of spans) {
    let g = by.get(s.serviceName);
    if (!g) by.set(s.serviceName, (g = []));
    g.push(s);
  }
  return [...by].map(([serviceName, group]) => ({ resource: { serviceName, namespace: "crash", region: "local", instanceId: `${serviceName}-1` }, spans: group }));
}
