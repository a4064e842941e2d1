// Hostile HTTP against real colony processes with their default limits (issue #9, part 3): gzip
// bombs with and without the token, connections that stall at every phase, a flood of sockets,
// SIGTERM in the middle of queries. Each test names its evidence: the colony process alive, its
// RSS (/proc/<pid>/status) against a ceiling, a probe call from another client answered quickly
// while the attack runs, sockets closed by the colony, exit codes and times.
// The timeouts themselves, with short values, are tested in-process in colony/server/limits.test.ts.
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { DEFAULT_LIMITS } from "../../colony/server/listen.js";
import { Store } from "../../colony/store/store.js";
import { colonyMemoryMiB, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";

const TOKEN = "hostile-token-5b2e";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const LIST = "/coral.colony.v1.QueryService/ListServices";
const STREAM = "/coral.colony.v1.QueryService/StreamQuery";
/** How much more memory than at rest the colony may use while under attack. */
const RSS_CEILING_BYTES = 300 * 2 ** 20;

/** 1 MiB of zeros gzipped is ~1 KiB; gzip members concatenated inflate to their sum. */
const MEMBER = gzipSync(Buffer.alloc(2 ** 20), { level: 9 });
/** About 1 MB on the wire, 1 GiB once inflated. */
const BOMB = Buffer.concat(Array.from({ length: 1024 }, () => MEMBER));

function envelope(payload: Buffer, flags: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flags;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** The colony's processes together (supervisor and worker). */
function rssBytes(pid: number): number {
  return colonyMemoryMiB(pid) * 2 ** 20;
}

/** Samples the process's RSS every 25 ms until stopped; returns the highest. */
function watchRss(pid: number): () => number {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // gone: the test's alive check reports it
    }
  }, 25).unref();
  return () => {
    clearInterval(timer);
    return Math.max(peak, rssBytes(pid));
  };
}

/**
 * Runs `attack` while a client of its own calls ListServices with the token again and again;
 * returns the attack's result and how many probe calls were answered. A probe that fails (or
 * outlives its 10 s deadline) fails the test: the colony must keep serving others under attack.
 */
async function whileProbing<T>(baseUrl: string, attack: () => Promise<T>): Promise<{ result: T; calls: number }> {
  const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(baseUrl));
  let running = true;
  let calls = 0;
  const probing = (async () => {
    while (running) {
      await client.listServices({}, { headers: AUTH, timeoutMs: 10_000 });
      calls++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  let result: T;
  try {
    result = await attack();
  } finally {
    running = false;
    await probing;
  }
  return { result, calls };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One HTTP/1.1 POST on a connection of its own. A colony that refuses a request before reading its
 * body closes the connection; the client's unsent bytes then make the kernel reset it, and the answer
 * already sent can be lost with the reset (EPIPE/ECONNRESET before any response): the test sends
 * again, as a client would, at most three times.
 */
async function post1(url: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await post1Once(url, headers, body);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (attempt === 3 || (code !== "EPIPE" && code !== "ECONNRESET")) throw err;
    }
  }
}

function post1Once(url: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { ...headers, "content-length": String(body.length) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: { ...res.headers, ...res.trailers }, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** One HTTP/2 POST on a session of its own; the answer's headers and trailers together. */
async function post2(baseUrl: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  try {
    const stream = session.request({ ":method": "POST", ...headers });
    stream.on("error", () => {});
    stream.end(body);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on("trailers", (t) => (trailers = t));
    const [head] = (await once(stream, "response")) as [http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader];
    await once(stream, "close");
    return { status: head[":status"]!, headers: { ...head, ...trailers }, body: Buffer.concat(chunks) };
  } finally {
    session.destroy();
  }
}

/** The error code an answer carries, whatever its protocol. */
function codeOf(a: Answer): string {
  if (a.headers["grpc-status"] !== undefined) return `grpc-status ${a.headers["grpc-status"]}`;
  const contentType = String(a.headers["content-type"]);
  // gRPC-web sends trailers as the body's last message (flag 0x80), Connect streaming its error as
  // the end-of-stream message (flag 0x02); both right after a 5-byte prefix when no data came first.
  if (contentType.startsWith("application/grpc-web")) {
    return `grpc-status ${/^grpc-status:\s*(\d+)\r?$/im.exec(a.body.subarray(5).toString())?.[1]}`;
  }
  if (contentType.startsWith("application/connect+")) return JSON.parse(a.body.subarray(5).toString()).error.code;
  return JSON.parse(a.body.toString()).code;
}

/** Every way a bomb can reach the query port: each protocol, each compression header. */
function bombs(baseUrl: string, auth: Record<string, string>): Record<string, () => Promise<Answer>> {
  const url = (path: string) => `${baseUrl}${path}`;
  return {
    "Connect unary, HTTP/1.1, content-encoding gzip": () =>
      post1(url(LIST), { ...auth, "content-type": "application/proto", "content-encoding": "gzip" }, BOMB),
    "Connect unary, HTTP/2, content-encoding gzip": () =>
      post2(baseUrl, { ...auth, ":path": LIST, "content-type": "application/proto", "content-encoding": "gzip" }, BOMB),
    "Connect streaming, HTTP/1.1, connect-content-encoding gzip": () =>
      post1(url(STREAM), { ...auth, "content-type": "application/connect+proto", "connect-content-encoding": "gzip" }, envelope(BOMB, 1)),
    "gRPC, HTTP/2, grpc-encoding gzip": () =>
      post2(baseUrl, { ...auth, ":path": LIST, "content-type": "application/grpc", "grpc-encoding": "gzip", te: "trailers" }, envelope(BOMB, 1)),
    "gRPC-web, HTTP/1.1, grpc-encoding gzip": () =>
      post1(url(LIST), { ...auth, "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" }, envelope(BOMB, 1)),
  };
}

/** Runs every bomb `rounds` times, four at a time, while a probe calls; collects the evidence. */
async function underBombardment(colony: SpawnedColony, attacks: Record<string, () => Promise<Answer>>, rounds: number) {
  const pid = colony.proc.pid!;
  const baseline = rssBytes(pid);
  const peak = watchRss(pid);
  const codes: Record<string, Set<string>> = {};
  const queue = Object.entries(attacks).flatMap(([name, send]) => Array.from({ length: rounds }, () => [name, send] as const));
  const probed = await whileProbing(colony.baseUrl, () =>
    Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const [name, send] = next;
          (codes[name] ??= new Set()).add(codeOf(await send()));
        }
      }),
    ),
  );
  return { baseline, growth: peak() - baseline, probed, codes: Object.fromEntries(Object.entries(codes).map(([k, v]) => [k, [...v]])) };
}

describe("query port under gzip bombs (1 MB that inflates to 1 GiB)", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token: TOKEN, otlp: "off" });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  it("without a token: unauthenticated on every protocol, nothing inflated, the probe served", async () => {
    const r = await underBombardment(colony, bombs(colony.baseUrl, {}), 4);
    expect(r.codes).toEqual({
      "Connect unary, HTTP/1.1, content-encoding gzip": ["unauthenticated"],
      "Connect unary, HTTP/2, content-encoding gzip": ["unauthenticated"],
      "Connect streaming, HTTP/1.1, connect-content-encoding gzip": ["unauthenticated"],
      "gRPC, HTTP/2, grpc-encoding gzip": [`grpc-status ${Code.Unauthenticated}`],
      "gRPC-web, HTTP/1.1, grpc-encoding gzip": [`grpc-status ${Code.Unauthenticated}`],
    });
    expect(colony.proc.exitCode).toBeNull();
    expect(r.growth).toBeLessThan(RSS_CEILING_BYTES);
    expect(r.probed.calls).toBeGreaterThan(0);
  });

  it("with the token: resource_exhausted at the 4 MiB read limit on every protocol, memory bounded, the probe served", async () => {
    const r = await underBombardment(colony, bombs(colony.baseUrl, AUTH), 4);
    const exhausted = `grpc-status ${Code.ResourceExhausted}`;
    expect(r.codes).toEqual({
      "Connect unary, HTTP/1.1, content-encoding gzip": ["resource_exhausted"],
      "Connect unary, HTTP/2, content-encoding gzip": ["resource_exhausted"],
      "Connect streaming, HTTP/1.1, connect-content-encoding gzip": ["resource_exhausted"],
      "gRPC, HTTP/2, grpc-encoding gzip": [exhausted],
      "gRPC-web, HTTP/1.1, grpc-encoding gzip": [exhausted],
    });
    expect(colony.proc.exitCode).toBeNull();
    expect(r.growth).toBeLessThan(RSS_CEILING_BYTES);
    expect(r.probed.calls).toBeGreaterThan(0);
  });

  it("deflate and other encodings are refused as unimplemented, gzip named as the one accepted", async () => {
    for (const encoding of ["deflate", "br", "x-bogus"]) {
      const a = await post1(`${colony.baseUrl}${LIST}`, { ...AUTH, "content-type": "application/proto", "content-encoding": encoding }, BOMB);
      expect(codeOf(a), encoding).toBe("unimplemented");
      expect(JSON.parse(a.body.toString()).message, encoding).toContain("supported encodings are gzip");
    }
    expect(colony.proc.exitCode).toBeNull();
  });
});

describe("OTLP port under gzip bombs", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token: TOKEN });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  it("401 without a token, 413 with one (inflation stops at --otlp-max-body), 415 for deflate; memory bounded, queries served", async () => {
    const send = (auth: Record<string, string>) => () =>
      post1(`${colony.otlpUrl}/v1/traces`, { ...auth, "content-type": "application/x-protobuf", "content-encoding": "gzip" }, BOMB);
    const pid = colony.proc.pid!;
    const baseline = rssBytes(pid);
    const peak = watchRss(pid);
    const statuses = new Set<string>();
    const probed = await whileProbing(colony.baseUrl, async () => {
      for (let round = 0; round < 4; round++) {
        const answers = await Promise.all([send({})(), send({})(), send(AUTH)(), send(AUTH)()]);
        for (const [i, a] of answers.entries()) statuses.add(`${i < 2 ? "no token" : "token"}: ${a.status}`);
      }
    });
    expect([...statuses].sort()).toEqual(["no token: 401", "token: 413"]);
    // OTLP/HTTP specifies gzip only: anything else is refused before the body is read.
    const deflated = await post1(`${colony.otlpUrl}/v1/traces`, { ...AUTH, "content-type": "application/x-protobuf", "content-encoding": "deflate" }, BOMB);
    expect(deflated.status).toBe(415);
    expect(colony.proc.exitCode).toBeNull();
    expect(peak() - baseline).toBeLessThan(RSS_CEILING_BYTES);
    expect(probed.calls).toBeGreaterThan(0);
  });
});

function connectTo(addr: string): Promise<net.Socket> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Seconds from now until the colony closes the socket. */
function closedAfterS(socket: net.Socket): Promise<number> {
  const t0 = performance.now();
  socket.on("error", () => {});
  socket.resume();
  return new Promise((resolve) => socket.once("close", () => resolve((performance.now() - t0) / 1000)));
}

/** How many of `sockets` the colony has not closed (nor ended) yet. */
function countOpen(sockets: net.Socket[]): () => number {
  let open = sockets.length;
  for (const s of sockets) {
    let counted = false;
    s.on("error", () => {});
    s.resume();
    for (const event of ["end", "close"]) s.once(event, () => counted || ((counted = true), open--));
  }
  return () => open;
}

/** Writes `text` one byte per second until the socket closes. */
function drip(socket: net.Socket, text: string): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= text.length) return clearInterval(timer);
    socket.write(text[i++]!);
  }, 1_000);
  socket.once("close", () => clearInterval(timer));
}

describe("default timeouts, end to end", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token: TOKEN });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  it("idle sockets, half an HTTP/2 preface, a preface without SETTINGS and 1 byte/s headers are all closed by the colony", async () => {
    const slowHeaders = `GET ${LIST} HTTP/1.1\r\nhost: x\r\nx-padding: ${"a".repeat(100)}\r\n\r\n`;
    const cases = {
      "query port, silent": async () => closedAfterS(await connectTo(colony.addr)),
      "query port, half a preface": async () => {
        const s = await connectTo(colony.addr);
        s.write("PRI * HTTP/2.0\r\n");
        return closedAfterS(s);
      },
      "query port, preface without SETTINGS": async () => {
        const s = await connectTo(colony.addr);
        s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        return closedAfterS(s);
      },
      "query port, 1 byte/s headers": async () => {
        const s = await connectTo(colony.addr);
        drip(s, slowHeaders);
        return closedAfterS(s);
      },
      "OTLP port, silent": async () => closedAfterS(await connectTo(colony.otlpAddr!)),
      "OTLP port, 1 byte/s headers": async () => {
        const s = await connectTo(colony.otlpAddr!);
        drip(s, slowHeaders.replace(LIST, "/v1/traces"));
        return closedAfterS(s);
      },
    };
    const closedAt = Object.fromEntries(await Promise.all(Object.entries(cases).map(async ([k, f]) => [k, await f()] as const)));
    // Defaults: 5 s to the first bytes, then 10 s for the headers (or the HTTP/2 SETTINGS). Each is
    // closed once its limit has run out and before it has run out twice: the colony's promise (a
    // client forgiven after a hold-up gets one more period), in its own configured numbers.
    const { firstBytesTimeoutMs: firstBytes, headersTimeoutMs: headers } = DEFAULT_LIMITS;
    const within = (seconds: number, limitMs: number) => [seconds > limitMs / 1000 - 0.5, seconds < (2 * limitMs) / 1000];
    expect(within(closedAt["query port, silent"]!, firstBytes)).toEqual([true, true]);
    expect(within(closedAt["query port, half a preface"]!, firstBytes)).toEqual([true, true]);
    expect(within(closedAt["query port, preface without SETTINGS"]!, headers)).toEqual([true, true]);
    // Its first byte is sniffed within a second, its second within two: 10 s of headers follow.
    expect(within(closedAt["query port, 1 byte/s headers"]!, headers)).toEqual([true, true]);
    expect(within(closedAt["OTLP port, silent"]!, headers)).toEqual([true, true]);
    expect(within(closedAt["OTLP port, 1 byte/s headers"]!, headers)).toEqual([true, true]);
    expect(colony.proc.exitCode).toBeNull();
  }, 30_000);
});

// 1024 unless this machine's open-files limit is too low for that (the colony inherits ours).
const CAP = DEFAULT_LIMITS.maxConnections;

describe(`connection cap (${CAP} per port by default)`, () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token: TOKEN });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  it("query port: with the cap reached, the next connection is closed at once; a client already connected is still served", async () => {
    // The client connects first (one HTTP/2 session, kept), then idle sockets fill the cap.
    const client = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    await client.listServices({}, { headers: AUTH });
    const flood: net.Socket[] = [];
    try {
      for (let i = 0; i < CAP - 1; i++) flood.push(await connectTo(colony.addr));
      const floodOpen = countOpen(flood);
      await closedAfterS(await connectTo(colony.addr));
      // At accept, not by the first-bytes timeout that closes the idle flood: all of it is still open.
      expect(floodOpen()).toBe(CAP - 1);
      await client.listServices({}, { headers: AUTH });
      // Served while the cap was still reached.
      expect(floodOpen()).toBe(CAP - 1);
      // The idle ones go after the 5 s first-bytes timeout, and newcomers get in again.
      await Promise.all(flood.map((s) => (s.destroyed ? undefined : once(s, "close"))));
      const fresh = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
      await fresh.listServices({}, { headers: AUTH });
    } finally {
      for (const s of flood) s.destroy();
    }
    expect(colony.proc.exitCode).toBeNull();
  }, 30_000);

  it("OTLP port: the same, for an exporter with a kept-alive connection", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const exportEmpty = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${colony.otlpUrl}/v1/traces`, { method: "POST", agent, headers: { ...AUTH, "content-type": "application/json" } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode!));
        });
        req.on("error", reject);
        req.end("{}");
      });
    const flood: net.Socket[] = [];
    try {
      expect(await exportEmpty()).toBe(200);
      for (let i = 0; i < CAP - 1; i++) flood.push(await connectTo(colony.otlpAddr!));
      const floodOpen = countOpen(flood);
      await closedAfterS(await connectTo(colony.otlpAddr!));
      // At accept, not by the headers timeout that closes the idle flood: all of it is still open.
      expect(floodOpen()).toBe(CAP - 1);
      expect(await exportEmpty()).toBe(200);
      expect(floodOpen()).toBe(CAP - 1);
    } finally {
      for (const s of flood) s.destroy();
      agent.destroy();
    }
    expect(colony.proc.exitCode).toBeNull();
  }, 30_000);
});

describe("SIGTERM while queries run", () => {
  it("exits 0 before the calls it cancels reach their deadlines, streams cancelled, the database checkpointed (no WAL left) and reopening with its data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-hostile-"));
    try {
      const dbPath = join(dir, "coral.duckdb");
      const colony = await spawnColony({ dbPath, token: TOKEN });
      // Data written just before the signal (over OTLP), so the WAL holds what the shutdown must
      // checkpoint. (A demo seed would cost several times this whole test.)
      await storeServices(colony, ["checkout"], TOKEN);
      expect(existsSync(`${dbPath}.wal`)).toBe(true);

      // Two StreamQuerys of 100 M rows read slowly (so the colony's writes back up) over gRPC and
      // Connect/HTTP/1.1, and an ExecuteQuery that takes a while. A colony that waited for them
      // would exit after their deadlines (it took ~30 s before), so the order tells.
      let batches = 0;
      const events: string[] = [];
      const outcomes = [
        ...(["gRPC", "Connect over HTTP/1.1"] as const).map(async (name) => {
          const client = createClient(QueryService, transports[name]!(colony.baseUrl));
          try {
            for await (const _ of client.streamQuery({ sql: "SELECT range AS n FROM range(100000000)" }, { headers: AUTH, timeoutMs: 20_000 })) {
              batches++;
              await new Promise((r) => setTimeout(r, 100));
            }
            return "completed";
          } catch (err) {
            const outcome = ConnectError.from(err).code === Code.DeadlineExceeded ? "client deadline" : "cut";
            events.push(outcome);
            return outcome;
          }
        }),
        (async () => {
          const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
          try {
            await client.executeQuery({ sql: "SELECT count(*) FROM range(2000000000) t(i) WHERE i % 7 = 3" }, { headers: AUTH, timeoutMs: 20_000 });
            return "completed";
          } catch (err) {
            const outcome = ConnectError.from(err).code === Code.DeadlineExceeded ? "client deadline" : "cut";
            events.push(outcome);
            return outcome;
          }
        })(),
      ];
      await expect.poll(() => batches, { timeout: 10_000 }).toBeGreaterThanOrEqual(4);

      const exited = once(colony.proc, "exit");
      colony.proc.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      events.push("exit");
      expect(code).toBe(0);
      const streams = await Promise.all(outcomes);
      expect(events).not.toContain("client deadline");
      expect(streams.slice(0, 2)).toEqual(["cut", "cut"]);
      expect(existsSync(`${dbPath}.wal`)).toBe(false);
      await colony.stop();

      const store = await Store.open(dbPath);
      try {
        const rows = await store.db.selectFrom("services").select("name").execute();
        expect(rows.map((r) => r.name)).toEqual(["checkout"]);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
