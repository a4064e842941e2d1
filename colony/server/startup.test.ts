import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCoral, spawnColony } from "../../test/helpers/colony.js";

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

describe("database problems at start-up: one line, exit 1, file untouched", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "coral-startup-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (db: string) => runCoral(["colony", "start", "--listen", "127.0.0.1:0", "--db", db]);

  it("a database another colony holds", async () => {
    const db = join(dir, "coral.duckdb");
    const holder = await spawnColony({ dbPath: db });
    try {
      const r = await start(db);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(
        new RegExp(`^coral: database ${escape(db)} is in use by another process \\(PID ${holder.proc.pid}\\) — is another colony running\\?.*\\n$`),
      );
    } finally {
      expect(await holder.stop()).toBe(0);
    }
  });

  it("a file that is not a DuckDB database", async () => {
    const db = join(dir, "notes.duckdb");
    writeFileSync(db, "these are my notes, not a database\n".repeat(500));
    const before = sha(db);
    const r = await start(db);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`coral: ${db} is not a DuckDB database (left untouched) — point --db at another file\n`);
    expect(sha(db)).toBe(before);
  });

  it("a data file DuckDB would open in memory, or an empty path: refused, the file untouched", async () => {
    for (const name of ["spans.json", "spans.csv"]) {
      const db = join(dir, name);
      writeFileSync(db, name.endsWith(".json") ? '{"a":1}\n' : "a,b\n1,2\n");
      const before = sha(db);
      const r = await start(db);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `coral: ${db} is not a database file (DuckDB would keep the data only in memory; ${db} is left untouched) — point --db at a .duckdb file\n`,
      );
      expect(sha(db)).toBe(before);
    }
    const empty = await start("");
    expect(empty.code).toBe(1);
    expect(empty.stderr).toBe("coral: --db is empty — name a database file, e.g. --db ./coral.duckdb\n");
  });

  it("a directory that does not exist", async () => {
    const db = join(dir, "missing", "coral.duckdb");
    const r = await start(db);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`coral: cannot create database ${db}: its directory does not exist\n`);
  });

  it("a path that is a directory", async () => {
    const db = join(dir, "adir");
    mkdirSync(db);
    const r = await start(db);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^coral: cannot open database .*adir/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("listen address problems at start-up", () => {
  it("rejects a malformed --listen as a usage error", async () => {
    for (const listen of ["9090", "localhost", "127.0.0.1:99999", "[::1:9090"]) {
      const r = await runCoral(["colony", "start", "--listen", listen, "--db", ":memory:"]);
      expect(r.code, listen).toBe(2);
      expect(r.stderr, listen).toMatch(/^coral: --listen: invalid listen address .*expected HOST:PORT/);
      expect(r.stderr.trim().split("\n"), listen).toHaveLength(1);
    }
  });

  it("rejects a malformed or absurd --retention as a usage error", async () => {
    for (const [retention, message] of [
      ["bogus", /^coral: --retention: "bogus" is not a duration/],
      ["99999999999d", /^coral: --retention: "99999999999d" is longer than 100 years; 0 keeps raw spans forever$/m],
    ] as const) {
      const r = await runCoral(["colony", "start", "--retention", retention, "--db", ":memory:"]);
      expect(r.code, retention).toBe(2);
      expect(r.stderr, retention).toMatch(message);
    }
  });

  it("rejects malformed or absurd SQL and ingest limits as usage errors", async () => {
    for (const [args, message] of [
      [["--query-timeout", "soon"], /^coral: --query-timeout: "soon" is not a duration/],
      [["--query-timeout", "2d"], /^coral: --query-timeout: "2d" must be between 1ms and 24h$/m],
      [["--query-memory", "lots"], /^coral: --query-memory: "lots" is not a size; write it like 512MiB or 4GiB$/m],
      [["--query-memory", "1MiB"], /^coral: --query-memory: "1MiB" is below 64MiB/],
      [["--query-memory", "4 parsecs"], /is not a size/],
      [["--memory-limit", "lots"], /^coral: --memory-limit: "lots" is not a size; write it like 1GiB or 8GiB$/m],
      [["--memory-limit", "2GiB"], /^coral: --memory-limit: "2GiB" leaves less than 256MiB beyond --query-memory \(2GiB\) for the colony itself/m],
      [["--query-memory", "1GiB", "--memory-limit", "1100MiB"], /^coral: --memory-limit: "1100MiB" leaves less than 256MiB/m],
      [["--otlp-max-inflight", "lots"], /^coral: --otlp-max-inflight: "lots" is not an integer/],
      [["--otlp-max-inflight=0"], /^coral: --otlp-max-inflight: must be a positive number of bytes$/m],
      [["--otlp-max-inflight=-5"], /^coral: --otlp-max-inflight: must be a positive number of bytes$/m],
    ] as const) {
      const r = await runCoral(["colony", "start", ...args, "--db", ":memory:"]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
  });

  it("names the port when it is taken", async () => {
    const colony = await spawnColony();
    try {
      const r = await runCoral(["colony", "start", "--listen", colony.addr, "--db", ":memory:"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `coral: cannot listen on ${colony.addr}: the port is already in use (another colony?) — pick another with --listen\n`,
      );
    } finally {
      await colony.stop();
    }
  });

  it("with --demo, a taken port is found before seeding: the database stays empty for the retry", async () => {
    const colony = await spawnColony({ otlp: "off" });
    const dir = mkdtempSync(join(tmpdir(), "coral-startup-"));
    try {
      const db = join(dir, "demo.duckdb");
      const r = await runCoral(["colony", "start", "--demo", "--listen", colony.addr, "--otlp", "off", "--db", db]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("the port is already in use");
      expect(r.stderr).not.toContain("seeded demo data");
      const after = await spawnColony({ dbPath: db, otlp: "off" });
      try {
        const services = await runCoral(["query", "services", "--colony", after.addr, "-o", "json"]);
        expect(JSON.parse(services.stdout)).toEqual({ services: [] });
      } finally {
        await after.stop();
      }
    } finally {
      await colony.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
