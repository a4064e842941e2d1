import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "bin/coral.cjs");

/** The environment a test's `coral` sees: nothing from the developer's shell that could change its behaviour. */
function cleanEnv(extra?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG", "SYSTEMROOT"]) {
    if (process.env[k] !== undefined) env[k] = process.env[k]!;
  }
  return { ...env, ...extra };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** With `sampleRss`: the highest RSS of the `coral` process itself seen every 20 ms, in MiB. */
  peakRssMiB?: number;
}

/** Runs `coral ARGS…` as a user would (bin/coral.cjs in a child process) and collects its output. */
export function runCoral(args: string[], o: { env?: Record<string, string>; input?: string; sampleRss?: boolean } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: cleanEnv(o.env), stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let peak = 0;
    const sampler = o.sampleRss ? setInterval(() => (peak = Math.max(peak, rssMiB(child.pid!))), 20) : undefined;
    child.on("error", reject);
    // A signal death has no exit code; 128+n is what a shell would report.
    child.on("close", (code, signal) => {
      clearInterval(sampler);
      resolve({ code: code ?? 128 + signalNumber(signal), stdout, stderr, ...(o.sampleRss ? { peakRssMiB: peak } : {}) });
    });
    child.stdin.end(o.input ?? "");
  });
}

function rssMiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
  } catch {
    return 0; // exited between samples
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === "SIGKILL" ? 9 : signal === "SIGTERM" ? 15 : signal === "SIGINT" ? 2 : 0;
}

export interface SpawnedColony {
  /** `host:port` the colony reported. */
  addr: string;
  /** `http://host:port`, ready for a Connect/gRPC transport. */
  baseUrl: string;
  /** `host:port` of the OTLP/HTTP receiver (undefined when started with `--otlp off`). */
  otlpAddr?: string;
  /** `http://host:port` of the OTLP/HTTP receiver: POST to `${otlpUrl}/v1/traces`. */
  otlpUrl?: string;
  dbPath: string;
  /**
   * The `coral colony start` process: the supervisor, which holds the ports and runs the colony
   * proper (database, queries, ingestion) as a worker process it restarts when needed.
   */
  proc: ChildProcess;
  /** PID of the worker serving now (it changes when the supervisor restarts it). */
  workerPid(): number | undefined;
  /** Memory of the colony's processes together (supervisor and worker), in MiB; see colonyMemoryMiB. */
  memoryMiB(field?: "VmRSS" | "VmHWM"): number;
  /** Everything the colony wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then wait for exit; resolves with the exit code. Removes the temp dir it created. */
  stop(): Promise<number | null>;
}

const READY = /^colony listening on (\S+) \((?:db|store) (.+)\)$/m;

/** Colonies of this test file not yet stopped: test/setup/colony-logs.ts prints their logs when a test fails. */
export const liveColonies = new Set<SpawnedColony>();

/**
 * `CORAL_STORE=clickhouse` runs the suites on ClickHouse: colonies a test does not give a database
 * file of its own start with `--store chdb:DIR` (embedded ClickHouse) in their temp directory.
 */
export const STORE_ENGINE: "duckdb" | "clickhouse" = process.env.CORAL_STORE === "clickhouse" ? "clickhouse" : "duckdb";
const OTLP_READY = /^otlp listening on (\S+)$/m;

/**
 * Starts `coral colony start` on a free port with its own temporary database and waits for the
 * ready line. Rejects with the colony's stderr if it exits before becoming ready. The OTLP receiver
 * listens on a free port too (`otlp: "off"` turns it off), so colonies can run side by side.
 */
export async function spawnColony(
  o: { demo?: boolean; liveDemo?: boolean; token?: string; dbPath?: string; otlp?: string; extraArgs?: string[]; env?: Record<string, string> } = {},
): Promise<SpawnedColony> {
  const ownDir = o.dbPath ? undefined : mkdtempSync(join(tmpdir(), "coral-colony-"));
  // A test that names its own DuckDB file (legacy files, crash recovery) is about DuckDB.
  const onClickHouse = STORE_ENGINE === "clickhouse" && !o.dbPath && !o.extraArgs?.includes("--db");
  const dbPath = o.dbPath ?? join(ownDir!, onClickHouse ? "chdb" : "coral.duckdb");
  // A test that names its store in extraArgs (the dual-engine comparison) gets exactly that one.
  const storeArgs = o.extraArgs?.includes("--store") ? [] : onClickHouse ? ["--store", `chdb:${dbPath}`] : ["--db", dbPath];
  const args = [bin, "colony", "start", "--listen", "127.0.0.1:0", "--otlp", o.otlp ?? "127.0.0.1:0", ...storeArgs];
  // Tests compare numbers across calls: demo data that keeps flowing would move them.
  if (o.demo) args.push("--demo", ...(o.liveDemo ? [] : ["--demo-static"]));
  if (o.token !== undefined) args.push("--token", o.token);
  args.push(...(o.extraArgs ?? []));

  const proc = spawn(process.execPath, args, { cwd: root, env: cleanEnv(o.env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));

  const addr = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const m = READY.exec(stdout);
      if (m) {
        proc.stdout!.off("data", check);
        resolve(m[1]);
      }
    };
    proc.stdout!.on("data", check);
    proc.once("error", reject);
    void exited.then((code) => reject(new Error(`colony exited with code ${code} before it was ready:\n${stderr}`)));
  }).catch((err) => {
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    throw err;
  });

  const otlpAddr = OTLP_READY.exec(stdout)?.[1];
  let stopping: Promise<number | null> | undefined;
  const colony: SpawnedColony = {
    addr,
    baseUrl: `http://${addr}`,
    otlpAddr,
    otlpUrl: otlpAddr && `http://${otlpAddr}`,
    dbPath,
    proc,
    workerPid: () => colonyPids(proc.pid!)[1],
    memoryMiB: (field) => colonyMemoryMiB(proc.pid!, field),
    stderr: () => stderr,
    stop() {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
        const code = await exited;
        liveColonies.delete(colony);
        if (ownDir) rmSync(ownDir, { recursive: true, force: true });
        return code;
      })();
      return stopping;
    },
  };
  liveColonies.add(colony);
  return colony;
}

/**
 * The processes of the colony `coral colony start` runs as `pid`: the supervisor, then its worker
 * (once started). Found by their parent in /proc/PID/stat: /proc/PID/task/TID/children may miss a
 * child while the parent is forking.
 */
export function colonyPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // After the command name, which is in parentheses and may hold spaces: state, then the parent's PID.
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return [pid, ...children];
}

/**
 * Whether any thread of `pid` is still running or exiting. Not just the process's own state: a
 * killed multi-threaded process shows as a zombie while its other threads still exit, holding its
 * files (DuckDB's lock among them).
 */
export function processLives(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
        return stat[stat.lastIndexOf(")") + 2] !== "Z";
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * A memory figure of /proc/PID/status summed over the colony's processes, in MiB: VmRSS (resident
 * now) or VmHWM (each process's peak since it started: their sum bounds the peak of the whole).
 * A process that is gone counts nothing.
 */
export function colonyMemoryMiB(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  let kb = 0;
  for (const p of colonyPids(pid)) {
    try {
      kb += Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      // gone between listing and reading
    }
  }
  return kb / 1024;
}

/**
 * Every kind of client a user might point at a colony, by name: fetch-style HTTP/1.1 ones (what
 * Deno and browsers speak) and HTTP/2 ones (what gRPC needs).
 */
export const transports: Record<string, (baseUrl: string) => Transport> = {
  "Connect over HTTP/1.1": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  "Connect over HTTP/2": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }),
  "Connect+JSON over HTTP/1.1": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  gRPC: (baseUrl) => createGrpcTransport({ baseUrl }),
  "gRPC-web over HTTP/1.1": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  "gRPC-web over HTTP/2": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
};

/** The services `coral colony start --demo` seeds. */
export const DEMO_SERVICES = ["auth", "frontend", "inventory", "legacy-api", "orders", "payments"];

/** host:port of a loopback port nothing listens on (bound, then released). */
export function closedPort(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(`127.0.0.1:${port}`));
    });
  });
}
