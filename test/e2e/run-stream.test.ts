// db.stream under `coral run`, end to end (real CLI, real Deno): batches cross the pipe as the
// colony's JSON bytes (cli/run/broker-stream.ts), so what matters is that they still arrive whole
// and exact, are counted against budgets, stop the colony's query when the script stops reading,
// carry the colony's errors, and never pile up in `coral run`. A real colony for the data; a fake
// one (node:http speaking Connect's streaming protocol) for what a real one will not do on cue.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamQueryResponseSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { MAX_LINE_BYTES } from "../../cli/run/wire.js";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const dir = mkdtempSync(join(tmpdir(), "coral-run-stream-"));
let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony();
});
afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let count = 0;
function script(source: string): string {
  const file = join(dir, `script-${++count}.ts`);
  writeFileSync(file, `import * as coral from "@coral/sdk";\n${source}`);
  return file;
}

describe("against a real colony", () => {
  it("batches longer than the pipe's line limit arrive whole, with every value exact", async () => {
    // ~8,192 rows × ~420 bytes a batch: each batch's line is several times MAX_LINE_BYTES.
    const sql = `SELECT range AS i, repeat('"\\\\ü🙂\t', 60) || range AS s, CASE WHEN range % 3 = 0 THEN NULL ELSE (range * 1.5)::DOUBLE END AS f, 9007199254740993 + range AS big FROM range(20000)`;
    const audit = join(dir, "audit-big.jsonl");
    const r = await runCoral([
      "run",
      "--colony",
      colony.addr,
      "--audit",
      audit,
      script(`
const q = ${JSON.stringify(sql)};
const streamed = [];
let batches = 0;
for await (const b of coral.db.stream(q)) { batches++; streamed.push(...b); }
const queried = [];
for (let at = 0; at < 20000; at += 5000) queried.push(...(await coral.db.query(q + " LIMIT 5000 OFFSET " + at)).rows);
const same = JSON.stringify(streamed) === JSON.stringify(queried.sort((a, b) => a.i - b.i));
console.log(JSON.stringify({ rows: streamed.length, batches, same, sample: streamed[7] }));
`),
    ]);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ rows: 20_000, same: true });
    expect(out.batches).toBeGreaterThan(1);
    expect(out.sample).toEqual({ i: 7, s: `${'"\\\\ü🙂\t'.repeat(60)}7`, f: 10.5, big: "9007199254741000" });
    const stream = JSON.parse(readFileSync(audit, "utf8").split("\n")[0]!);
    expect(stream).toMatchObject({ method: "StreamQuery", rows: 20_000, outcome: "ok" });
    // Every batch's bytes are counted: the strings alone are ~20,000 × 420 bytes.
    expect(stream.bytes).toBeGreaterThan(20_000 * 420);
    expect(stream.bytes / out.batches).toBeGreaterThan(MAX_LINE_BYTES);
  }, 120_000);

  it("the bytes budget stops a stream midway; rows and bytes delivered are what the audit records", async () => {
    const audit = join(dir, "audit-budget.jsonl");
    const r = await runCoral([
      "run",
      "--colony",
      colony.addr,
      "--audit",
      audit,
      "--budget",
      "bytes=2MB",
      script(`
let rows = 0;
try { for await (const b of coral.db.stream("SELECT range AS i, repeat('x', 100) AS pad FROM range(100000)")) rows += b.length; console.log("complete", rows); }
catch (e) { console.log(e.code, rows); }
`),
    ]);
    const [code, rows] = r.stdout.trim().split(" ");
    expect(code).toBe("resource_exhausted");
    const entry = JSON.parse(readFileSync(audit, "utf8").trimEnd());
    expect(entry).toMatchObject({ method: "StreamQuery", outcome: "resource_exhausted", rows: Number(rows) });
    expect(Number(rows)).toBeGreaterThan(0);
    expect(entry.bytes).toBeLessThanOrEqual(2_000_000);
    expect(entry.bytes).toBeGreaterThan(Number(rows) * 100);
    expect(r.stderr).toMatch(/^coral run: budget exceeded \(bytes\): used 1 RPCs, (\d+) rows, (\d+) bytes/);
    const [, usedRows, usedBytes] = /used 1 RPCs, (\d+) rows, (\d+) bytes/.exec(r.stderr)!;
    expect(Number(usedRows)).toBe(entry.rows);
    expect(Number(usedBytes)).toBe(entry.bytes);
  }, 60_000);
});

/** A colony that answers StreamQuery with `batches` (then `end`) and records what happened. */
interface Fake {
  addr: string;
  /** Bytes of batches written into the connection so far. */
  sent: number;
  /** Resolves when the client closed the connection before the stream's end. */
  abandoned: Promise<void>;
  server: Server;
}

const CHUNK = 8192;

function batchBytes(first: number, rows: number, pad: number): Buffer {
  const ids = Array.from({ length: rows }, (_, k) => first + k);
  const msg = create(StreamQueryResponseSchema, {
    columns: first === 0 ? [{ name: "i", type: "BIGINT" }, { name: "s", type: "VARCHAR" }] : [],
    rowCount: rows,
    valuesJson: JSON.stringify([ids, ids.map((i) => `${i}`.padEnd(pad, "x"))]),
  });
  const body = toBinary(StreamQueryResponseSchema, msg);
  const env = Buffer.alloc(5 + body.length);
  env.writeUInt32BE(body.length, 1);
  env.set(body, 5);
  return env;
}

function endBytes(end: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(end));
  const env = Buffer.alloc(5 + body.length);
  env[0] = 2;
  env.writeUInt32BE(body.length, 1);
  body.copy(env, 5);
  return env;
}

async function fakeColony(o: { batches: number; pad: number; end: unknown }): Promise<Fake> {
  let abandon!: () => void;
  const fake = { sent: 0, abandoned: new Promise<void>((r) => (abandon = r)) } as Fake;
  const write = (res: ServerResponse, b: Buffer) => new Promise<void>((r) => (res.write(b) ? r() : res.once("drain", r)));
  fake.server = createServer(async (req, res) => {
    req.resume();
    if (req.url !== "/coral.colony.v1.QueryService/StreamQuery") {
      res.writeHead(404).end();
      return;
    }
    let ended = false;
    res.on("close", () => ended || abandon());
    res.writeHead(200, { "content-type": "application/connect+proto" });
    for (let b = 0; b < o.batches && !res.destroyed; b++) {
      const bytes = batchBytes(b * CHUNK, CHUNK, o.pad);
      await write(res, bytes);
      fake.sent += bytes.length;
    }
    ended = true;
    if (!res.destroyed) res.end(endBytes(o.end));
  });
  await new Promise<void>((r) => fake.server.listen(0, "127.0.0.1", r));
  fake.addr = `127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
  return fake;
}

describe("against a colony that misbehaves on cue", () => {
  it("an error after some batches reaches the script as a CoralError with the colony's code and message", async () => {
    const fake = await fakeColony({ batches: 3, pad: 10, end: { error: { code: "resource_exhausted", message: "disk full" } } });
    try {
      const r = await runCoral([
        "run",
        "--colony",
        fake.addr,
        script(`
let rows = 0;
try { for await (const b of coral.db.stream("SELECT 1")) rows += b.length; console.log("complete", rows); }
catch (e) { console.log(e instanceof coral.CoralError, e.code, rows, e.message); }
`),
      ]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(`true resource_exhausted ${3 * CHUNK} disk full (colony ${fake.addr})\n`);
    } finally {
      fake.server.close();
    }
  }, 60_000);

  it("a script that breaks out of the loop stops the colony's stream while it goes on running", async () => {
    const fake = await fakeColony({ batches: 1_000_000, pad: 10, end: {} });
    const bin = fileURLToPath(new URL("../../bin/coral.cjs", import.meta.url));
    try {
      // The script stays alive until the colony side has seen the stream abandoned: coral run
      // exiting would close the connection anyway and prove nothing.
      const child = spawn(process.execPath, [bin, "run", "--colony", fake.addr, script(`
for await (const b of coral.db.stream("SELECT 1")) { console.log("first", b.length, b[0].i); break; }
await new Promise((r) => setTimeout(r, 60_000));
`)], { env: { PATH: process.env.PATH ?? "", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      const exited = new Promise<string>((r) => child.on("close", () => r("exited")));
      const first = await Promise.race([fake.abandoned.then(() => "abandoned"), exited]);
      child.kill("SIGTERM");
      await exited;
      expect(first).toBe("abandoned");
      expect(stdout).toBe(`first ${CHUNK} 0\n`);
    } finally {
      fake.server.close();
    }
  }, 60_000);

  it("a slow reader holds the colony's stream, not coral run's memory", async () => {
    // 120 batches of ~4 MiB (~500 MiB) read at a crawl: buffered, they would be ~500 MB in coral run.
    const batches = 120;
    const fake = await fakeColony({ batches, pad: 500, end: {} });
    try {
      const file = script(`
let rows = 0;
for await (const b of coral.db.stream("SELECT 1")) { rows += b.length; await new Promise((r) => setTimeout(r, 10)); }
console.log(rows);
`);
      const { code, stdout, stderr, peakRssMiB: peak = 0 } = await runCoral(["run", "--colony", fake.addr, "--memory", "2048", file], { sampleRss: true });
      expect(stderr).toBe("");
      expect(stdout).toBe(`${batches * CHUNK}\n`);
      expect(code).toBe(0);
      expect(peak).toBeGreaterThan(0);
      // coral run itself is ~60-100 MB; a stream it buffered would add hundreds.
      expect(peak).toBeLessThan(200);
    } finally {
      fake.server.close();
    }
  }, 180_000);
});
