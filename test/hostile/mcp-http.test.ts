// `coral mcp --listen` (Streamable HTTP) against hostile and broken clients: a real server process,
// raw sockets and fetch. Huge bodies are refused before they are read (413, the server's memory
// flat), malformed JSON-RPC gets a JSON-RPC error, a crowd of clients and of scripts meets its caps
// (503, a tool error) with memory bounded, clients that dribble their headers are cut at the
// headers timeout, and a client killed mid-run_script takes its Deno process and temp files with
// it. After each, the server answers a normal request. Measured: the server's RSS from /proc.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPort } from "../helpers/colony.js";
import { processesMentioning } from "../helpers/sandbox.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "bin/coral.cjs");
const MAX_BODY = 4 * 2 ** 20;
const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

let dir: string;
let server: ChildProcess;
let url: string;
let port: number;
let stderr = "";

/** Resident memory of the server process (its Deno children not included), in MiB. */
function serverMiB(): number {
  try {
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** The server's highest RSS, sampled every 10 ms while `work` runs. */
async function peakWhile<T>(work: Promise<T>): Promise<{ result: T; peakMiB: number }> {
  let peakMiB = serverMiB();
  const timer = setInterval(() => (peakMiB = Math.max(peakMiB, serverMiB())), 10);
  try {
    return { result: await work, peakMiB };
  } finally {
    clearInterval(timer);
  }
}

function rpc(method: string, params: object = {}, id = 1): string {
  return JSON.stringify({ jsonrpc: "2.0", id, method, params });
}

async function post(body: string | Uint8Array, headers: Record<string, string> = HEADERS): Promise<{ status: number; json: any }> {
  const r = await fetch(url, { method: "POST", body: typeof body === "string" ? body : new Uint8Array(body), headers, signal: AbortSignal.timeout(60_000) });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, json };
}

/** A normal request, answered: the server is still serving. */
async function stillServes(): Promise<void> {
  const r = await post(rpc("tools/list"));
  expect(r.status).toBe(200);
  expect(r.json.result.tools.map((t: { name: string }) => t.name)).toContain("run_script");
}

/** Raw HTTP over one socket: what was sent back, and whether the server closed the connection. */
function raw(send: (s: Socket) => void): Promise<{ head: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    s.setEncoding("latin1").on("data", (d: string) => (got += d));
    s.on("error", () => {});
    s.on("close", () => resolve({ head: got.split("\r\n")[0] ?? "", closed: true }));
    s.on("connect", () => send(s));
  });
}

/** The run directories and audit files of scripts in flight, under the server's TMPDIR. */
function scriptTemps(): string[] {
  return readdirSync(dir).filter((n) => /^coral-(run|mcp-audit)/.test(n));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-mcp-hostile-"));
  // No colony behind it: these scripts never call one, and tools/list needs none.
  const colony = await closedPort();
  server = spawn(process.execPath, [bin, "mcp", "--listen", "127.0.0.1:0", "--colony", colony, "--timeout", "120"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", TMPDIR: dir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    server.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const m = /^mcp listening on (\S+)/m.exec(out);
      if (m) resolve(m[1]!);
    });
    server.once("exit", (code) => reject(new Error(`coral mcp --listen exited with ${code}: ${stderr}`)));
  });
  port = Number(new URL(url).port);
}, 60_000);

afterAll(() => {
  server?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

describe("coral mcp --listen under hostile clients", () => {
  it("a huge body is refused with 413 before it is read, whether its length is declared or not; memory stays flat", async () => {
    const before = serverMiB();
    const chunk = Buffer.alloc(2 ** 20, 0x20);
    // Declares 1 GiB: answered on the headers alone, then 64 MiB of body are sent into a closed door.
    const declared = await peakWhile(
      raw((s) => {
        s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${2 ** 30}\r\n\r\n`);
        s.once("data", () => {
          let sent = 0;
          const more = () => {
            while (sent < 64 && s.writable && s.write(chunk)) sent++;
            if (sent < 64 && s.writable) s.once("drain", more);
          };
          more();
        });
      }),
    );
    expect(declared.result.head).toBe("HTTP/1.1 413 Payload Too Large");
    expect(declared.result.closed).toBe(true);
    // Chunked, no length: 64 MiB of one JSON string.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"`));
        for (let i = 0; i < 64; i++) c.enqueue(chunk);
        c.close();
      },
    });
    const chunked = await peakWhile(
      fetch(url, { method: "POST", body, headers: HEADERS, duplex: "half", signal: AbortSignal.timeout(60_000) } as RequestInit).then(
        (r) => r.status,
        (e: Error) => `cut: ${e.message}`,
      ),
    );
    expect([413, "cut: fetch failed"]).toContain(chunked.result);
    const peak = Math.max(declared.peakMiB, chunked.peakMiB);
    console.log(`64 MiB bodies: declared 1 GiB → 413, chunked → ${chunked.result}; server RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
    // Twice the body limit: the server holds at most one body's worth of each request.
    expect(peak - before).toBeLessThan((2 * MAX_BODY) / 2 ** 20 + 32);
    await stillServes();
  }, 120_000);

  it("malformed JSON-RPC gets a JSON-RPC error, never a crash or a hang", async () => {
    const deep = "[".repeat(200_000) + "]".repeat(200_000);
    const cases: [string, string | Uint8Array, Record<string, string>?][] = [
      ["not JSON", "hello"],
      ["truncated JSON", '{"jsonrpc":"2.0","id":1,'],
      ["an empty body", ""],
      ["a number", "42"],
      ["the wrong jsonrpc version", JSON.stringify({ jsonrpc: "1.0", id: 1, method: "tools/list" })],
      ["no method", JSON.stringify({ jsonrpc: "2.0", id: 1 })],
      ["an unknown method", rpc("no/such/method")],
      ["a batch of 101", JSON.stringify(Array.from({ length: 101 }, (_, i) => JSON.parse(rpc("tools/list", {}, i))))],
      ["200,000 nested arrays", deep],
      ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])],
      ["a tool call with arguments of the wrong shape", rpc("tools/call", { name: "run_script", arguments: [1, 2, 3] })],
      ["no Accept header", rpc("tools/list"), { "content-type": "application/json" }],
      ["a text/plain body", rpc("tools/list"), { "content-type": "text/plain", accept: HEADERS.accept }],
    ];
    for (const [what, body, headers] of cases) {
      const r = await post(body, headers);
      // Refused with a JSON-RPC error (HTTP 4xx), or, for a well-formed request whose arguments are
      // wrong, answered with an error the client can read.
      const error = r.json?.error?.message ?? (r.json?.result?.isError ? r.json.result.content[0].text : undefined);
      expect(typeof error, `${what}: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`).toBe("string");
      expect(r.status, what).toBeLessThan(500);
    }
    expect(server.exitCode).toBeNull();
    await stillServes();
  }, 60_000);

  it("a crowd of clients meets the request cap (503) and the script cap (a tool error); memory stays bounded", async () => {
    const before = serverMiB();
    // Eight scripts that sleep, then 300 more requests at once, each on its own connection.
    const sleeper = (i: number) => rpc("tools/call", { name: "run_script", arguments: { source: `await new Promise((r) => setTimeout(r, 4000)); console.log("slept ${i}");` } }, i);
    const scripts = Array.from({ length: 8 }, (_, i) => post(sleeper(i)));
    const crowd = Array.from({ length: 300 }, () => post(rpc("tools/list"), { ...HEADERS, connection: "close" }).then((r) => r.status, () => "reset"));
    const { result, peakMiB } = await peakWhile(Promise.all([Promise.all(scripts), Promise.all(crowd)]));
    const [ran, statuses] = result;
    const texts = ran.map((r) => r.json.result.content[0].text as string);
    const slept = texts.filter((t) => /stdout \(\d+ bytes\):\nslept \d/.test(t)).length;
    const refused = texts.filter((t) => t.startsWith("4 scripts are running already, the most coral mcp runs at once")).length;
    const count = (s: number | string) => statuses.filter((x) => x === s).length;
    console.log(`8 scripts: ${slept} ran, ${refused} refused; 300 requests: ${count(200)} × 200, ${count(503)} × 503, ${count("reset")} reset; server RSS ${before.toFixed(0)} → peak ${peakMiB.toFixed(0)} MiB`);
    expect(slept).toBe(4);
    expect(refused).toBe(4);
    expect(count(200) + count(503) + count("reset")).toBe(300);
    expect(count(200)).toBeGreaterThan(0);
    expect(peakMiB - before).toBeLessThan(200);
    await stillServes();

    // Requests whose bodies never finish arriving each hold a place: past 64, a 503 says so at once.
    const held: Socket[] = [];
    for (let i = 0; i < 64; i++) {
      const s = connect(port, "127.0.0.1");
      s.on("error", () => {});
      s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nAccept: ${HEADERS.accept}\r\nContent-Length: 1000\r\n\r\n{`);
      held.push(s);
    }
    try {
      // Polled: on a busy machine the server takes a moment to read all 64 requests' headers.
      let busy = await post(rpc("tools/list"));
      for (const until = Date.now() + 20_000; busy.status !== 503 && Date.now() < until; ) busy = await post(rpc("tools/list"));
      expect(busy.status).toBe(503);
      expect(busy.json.error.message).toBe("busy: coral mcp is handling 64 requests already; retry shortly");
    } finally {
      for (const s of held) s.destroy();
    }
    // Their places come back as their connections close.
    await expect.poll(async () => (await post(rpc("tools/list"))).status, { timeout: 10_000, interval: 100 }).toBe(200);
    await stillServes();
  }, 120_000);

  it("clients that dribble their headers are cut at the headers timeout while others are served", async () => {
    const sockets = Array.from({ length: 50 }, () =>
      raw((s) => {
        s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
        const drip = setInterval(() => (s.writable ? s.write("X-Slow: 1\r\n") : clearInterval(drip)), 1_000);
        s.once("close", () => clearInterval(drip));
      }),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    await stillServes();
    // The server's headers timeout is 10 s; each slow client is answered 408 and disconnected.
    const cut = await Promise.all(sockets);
    expect(cut.every((c) => c.closed)).toBe(true);
    expect(new Set(cut.map((c) => c.head))).toEqual(new Set(["HTTP/1.1 408 Request Timeout"]));
    await stillServes();
  }, 60_000);

  it("a client killed mid-run_script: its Deno process ends, its temp files go, the server serves on", async () => {
    // A separate process, so its connection dies with it as a crashed agent's would.
    const client = spawn(
      process.execPath,
      [
        "-e",
        `fetch(${JSON.stringify(url)}, { method: "POST", headers: ${JSON.stringify(HEADERS)}, body: ${JSON.stringify(rpc("tools/call", { name: "run_script", arguments: { source: "await new Promise((r) => setTimeout(r, 100000));" } }))} }); setInterval(() => {}, 1000);`,
      ],
      { stdio: "ignore" },
    );
    try {
      // The script's Deno is running (its command line names the run directory under our TMPDIR).
      const deno = () => processesMentioning(dir).filter((p) => /deno/.test(p));
      const t0 = Date.now();
      while (deno().length === 0) {
        if (Date.now() - t0 > 60_000) throw new Error(`no Deno process appeared; server stderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(scriptTemps().length).toBeGreaterThan(0);
      client.kill("SIGKILL");
      const t1 = Date.now();
      while ((deno().length > 0 || scriptTemps().length > 0) && Date.now() - t1 < 30_000) await new Promise((r) => setTimeout(r, 100));
      console.log(`client killed: Deno gone and temp files removed after ${((Date.now() - t1) / 1000).toFixed(1)} s`);
      expect(deno()).toEqual([]);
      expect(scriptTemps()).toEqual([]);
    } finally {
      client.kill("SIGKILL");
    }
    await stillServes();
    const r = await post(rpc("tools/call", { name: "run_script", arguments: { source: "console.log(6 * 7)" } }));
    expect(r.json.result.content[0].text).toMatch(/stdout \(3 bytes\):\n42\n/);
  }, 120_000);
});
