// The lean unary path (lean-http.ts) against servers that misbehave on cue, byte by byte: each
// failure must be the one node:http + readUnary met on the same answer (same error, same words), and
// the connections it keeps must be ones it may keep.
import { createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { closedPort } from "../../test/helpers/colony.js";
import { ColonyClient, type ClientLimits } from "./client.js";
import { readUnary } from "./connect-wire.js";

const PATH = "/coral.colony.v1.QueryService/ListServices";
const JSON_TYPE = "application/json";
const OK = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";

interface Request {
  socket: Socket;
  /** 0 for the first request on its connection. */
  onConnection: number;
  headers: string;
}

/** A TCP server that reads whole requests and lets `answer` write whatever bytes it likes. */
async function rawServer(answer: (r: Request) => void, host = "127.0.0.1") {
  const sockets = new Set<Socket>();
  let connections = 0;
  let requests = 0;
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buf = Buffer.alloc(0);
    let onConnection = 0;
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const headers = buf.toString("latin1", 0, end);
        const length = Number(/content-length: (\d+)/i.exec(headers)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        requests++;
        answer({ socket, onConnection: onConnection++, headers });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as { port: number }).port;
  const addr = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    addr,
    counts: () => ({ connections, requests }),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

function clientOf(addr: string, limits: Partial<ClientLimits> = {}): ColonyClient {
  const c = new ColonyClient({ baseUrl: `http://${addr}`, display: addr }, "tok", limits);
  open.push(c);
  return c;
}

/** node:http's path, as unary calls took it before the lean one. */
async function viaNodeHttp(c: ColonyClient, signal?: AbortSignal): Promise<Buffer> {
  return readUnary(await c.post(PATH, JSON_TYPE, Buffer.from("{}"), signal), JSON_TYPE, c.limits);
}

async function outcome(call: Promise<Buffer>, c: ColonyClient) {
  try {
    return { ok: (await call).toString("latin1") };
  } catch (e) {
    const { code, message } = e as { code?: string; message: string };
    return { error: { code, message }, said: await c.failure(e) };
  }
}

/** Both paths against a fresh server that answers every request with `answer`. */
async function both(answer: (r: Request) => void, limits: Partial<ClientLimits> = {}) {
  const s = await rawServer(answer);
  open.push(s);
  const node = await outcome(viaNodeHttp(clientOf(s.addr, limits)), clientOf(s.addr, limits));
  const c = clientOf(s.addr, limits);
  const lean = await outcome(c.unary(PATH, JSON_TYPE, Buffer.from("{}")), c);
  return { node, lean };
}

const answers: Record<string, (r: Request) => void> = {
  "a garbage status line": (r) => r.socket.end("garbage\r\n\r\n"),
  "garbage and no line end, the connection left open": (r) => r.socket.write("garbage"),
  "an HTTP/2 status line": (r) => r.socket.end("HTTP/2 200 OK\r\n\r\n"),
  "a two-digit status": (r) => r.socket.end("HTTP/1.1 20 OK\r\n\r\n"),
  "a status line ended by a bare LF": (r) => r.socket.end("HTTP/1.1 200 OK\ncontent-length: 0\n\n"),
  "a close before any byte": (r) => r.socket.end(),
  "a close in the middle of the head": (r) => r.socket.end("HTTP/1.1 200 OK\r\ncontent-ty"),
  "a close in the middle of the body": (r) => r.socket.end(`${OK}content-length: 100\r\n\r\n{`),
  "a reset in the middle of the body": (r) => {
    r.socket.write(`${OK}content-length: 100\r\n\r\n{`);
    setTimeout(() => r.socket.resetAndDestroy(), 20);
  },
  "a reset before any byte": (r) => r.socket.resetAndDestroy(),
  "a header flood that never ends": (r) => {
    r.socket.write("HTTP/1.1 200 OK\r\n");
    for (let i = 0; i < 2000; i++) r.socket.write(`x-h${i}: ${"a".repeat(20)}\r\n`);
  },
  "one header line of 20 KB": (r) => r.socket.write(`HTTP/1.1 200 OK\r\nx: ${"a".repeat(20_000)}`),
  "300 small headers": (r) => r.socket.end(`${OK}content-length: 2\r\n${Array.from({ length: 300 }, (_, i) => `x${i}: a\r\n`).join("")}\r\n{}`),
  "a Content-Length past 2^64": (r) => r.socket.end(`${OK}content-length: 99999999999999999999\r\n\r\n`),
  "a Content-Length of letters": (r) => r.socket.end(`${OK}content-length: 12abc\r\n\r\n`),
  "a negative Content-Length": (r) => r.socket.end(`${OK}content-length: -1\r\n\r\n`),
  "two Content-Lengths": (r) => r.socket.end(`${OK}content-length: 2\r\ncontent-length: 2\r\n\r\n{}`),
  "Content-Length and chunked": (r) => r.socket.end(`${OK}content-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`),
  "a chunked body with an extension and a trailer": (r) => r.socket.end(`${OK}transfer-encoding: chunked\r\n\r\n1\r\n{\r\n1;x=1\r\n}\r\n0\r\nx-t: 1\r\n\r\n`),
  "a chunk size that is not hex": (r) => r.socket.end(`${OK}transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`),
  "a chunk size past 2^64": (r) => r.socket.end(`${OK}transfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}\r\n0\r\n\r\n`),
  "a body read to the close (no length)": (r) => r.socket.end(`${OK}\r\n{}`),
  "a transfer coding other than chunked": (r) => r.socket.end(`${OK}transfer-encoding: gzip\r\n\r\n{}`),
  "an HTTP/1.0 answer": (r) => r.socket.end("HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{}"),
  "100 Continue and 103 Early Hints first": (r) => r.socket.end(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: x\r\n\r\n${OK}content-length: 2\r\n\r\n{}`),
  "204 with a Content-Length": (r) => r.socket.end("HTTP/1.1 204 No\r\ncontent-length: 5\r\n\r\n"),
  "a status no one defined": (r) => r.socket.end("HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n"),
  "two content types": (r) => r.socket.end("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"),
  "a content type with parameters": (r) => r.socket.end("HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"),
  "header names in capitals, values padded": (r) => r.socket.end("HTTP/1.1 200 OK\r\nContent-Type:   application/json  \r\nContent-Length: 2\r\n\r\n{}"),
  "a space before a header's colon": (r) => r.socket.end("HTTP/1.1 200 OK\r\nContent-Type : application/json\r\nContent-Length: 2\r\n\r\n{}"),
  "a folded header line": (r) => r.socket.end("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n x\r\nContent-Length: 2\r\n\r\n{}"),
  "a NUL in a header value": (r) => r.socket.end("HTTP/1.1 200 OK\r\nContent-Type: appl\0ication/json\r\nContent-Length: 2\r\n\r\n{}"),
  "a Connect error as JSON": (r) => {
    const body = JSON.stringify({ code: "invalid_argument", message: "window: too wide" });
    r.socket.end(`HTTP/1.1 400 Bad\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  },
  "a chunked 404 of another server": (r) => r.socket.end("HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n"),
  "bytes past the answer": (r) => r.socket.end(`${OK}content-length: 2\r\n\r\n{}garbage`),
};

describe("an answer each path reads alike", () => {
  for (const [name, answer] of Object.entries(answers)) {
    it(name, async () => {
      const { node, lean } = await both(answer, { answerTimeoutMs: 2_000 });
      expect(lean).toEqual(node);
    });
  }

  it("a Content-Length over the size cap: refused unread", async () => {
    const { node, lean } = await both((r) => r.socket.write(`${OK}content-length: 2048\r\n\r\n`), { readMaxBytes: 1024 });
    expect(lean).toEqual(node);
    expect(lean.said?.message).toMatch(/^the colony sent a message of 2048 bytes, over the 1024 coral accepts/);
  });

  it("a chunked body over the size cap: cut off", async () => {
    const chunk = "x".repeat(700);
    const { node, lean } = await both((r) => r.socket.write(`${OK}transfer-encoding: chunked\r\n\r\n2bc\r\n${chunk}\r\n2bc\r\n${chunk}\r\n`), { readMaxBytes: 1024 });
    expect(lean).toEqual(node);
    expect(lean.said?.code).toBe("resource_exhausted");
  });

  it("a connection refused", async () => {
    const addr = await closedPort();
    const node = await outcome(viaNodeHttp(clientOf(addr)), clientOf(addr));
    const c = clientOf(addr);
    const lean = await outcome(c.unary(PATH, JSON_TYPE, Buffer.from("{}")), c);
    expect(lean).toEqual(node);
    expect(lean.said?.message).toMatch(/connection refused/);
  });

  it("a head dripped a byte at a time: deadline_exceeded after answerTimeoutMs in all", async () => {
    const drip = (r: Request) => {
      const t = setInterval(() => (r.socket.destroyed ? clearInterval(t) : r.socket.write("x-a: b\r\n".slice(0, 1))), 20);
      r.socket.write("HTTP/1.1 200 OK\r\n");
      r.socket.once("close", () => clearInterval(t));
    };
    const { node, lean } = await both(drip, { answerTimeoutMs: 300 });
    expect(lean).toEqual(node);
    expect(lean.said).toMatchObject({ code: "deadline_exceeded", message: expect.stringMatching(/timed out: no answer in 0\.3 s$/) });
  });

  it("a body dripped a byte at a time: taken, each pause under answerTimeoutMs", async () => {
    const body = JSON.stringify({ services: [] });
    const drip = (r: Request) => {
      r.socket.write(`${OK}content-length: ${body.length}\r\n\r\n`);
      let i = 0;
      const t = setInterval(() => {
        if (r.socket.destroyed || i === body.length) clearInterval(t);
        else r.socket.write(body[i++]!);
      }, 20);
    };
    const { node, lean } = await both(drip, { answerTimeoutMs: 300 });
    expect(lean).toEqual(node);
    expect(lean.ok).toBe(body);
  });

  it("a body that stops midway: deadline_exceeded", async () => {
    const { node, lean } = await both((r) => r.socket.write(`${OK}content-length: 10\r\n\r\n{"a`), { answerTimeoutMs: 300 });
    expect(lean).toEqual(node);
    expect(lean.said?.code).toBe("deadline_exceeded");
  });

  it("an abort while the colony thinks: the same AbortError", async () => {
    const s = await rawServer(() => {});
    open.push(s);
    const abortIn = (ms: number) => AbortSignal.timeout(ms);
    const node = await outcome(viaNodeHttp(clientOf(s.addr), abortIn(50)), clientOf(s.addr));
    const c = clientOf(s.addr);
    const lean = await outcome(c.unary(PATH, JSON_TYPE, Buffer.from("{}"), abortIn(50)), c);
    expect(lean).toEqual(node);
    expect(lean.error).toEqual({ code: "ABORT_ERR", message: "This operation was aborted" });
  });
});

describe("the lean path's connections", () => {
  const fine = (r: Request) => r.socket.write(`${OK}content-length: 2\r\n\r\n{}`);

  async function calls(c: ColonyClient, n: number) {
    const out = [];
    for (let i = 0; i < n; i++) out.push((await c.unary(PATH, JSON_TYPE, Buffer.from("{}"))).toString());
    return out;
  }

  it("sequential calls share one connection, each request carrying the headers", async () => {
    const seen: string[] = [];
    const s = await rawServer((r) => {
      seen.push(r.headers);
      fine(r);
    });
    open.push(s);
    expect(await calls(clientOf(s.addr), 5)).toEqual(Array(5).fill("{}"));
    expect(s.counts()).toEqual({ connections: 1, requests: 5 });
    for (const h of seen) {
      expect(h).toMatch(/^POST \/coral\.colony\.v1\.QueryService\/ListServices HTTP\/1\.1\r\n/);
      expect(h).toMatch(new RegExp(`\r\nhost: ${s.addr}\r\n`));
      expect(h).toMatch(/\r\nauthorization: Bearer tok\r\n/);
      expect(h).toMatch(/\r\nconnect-protocol-version: 1\r\n/);
      expect(h).toMatch(/\r\nuser-agent: coral\/\d+\.\d+\.\d+/);
      expect(h).toMatch(/\r\ncontent-length: 2$/);
    }
  });

  it("concurrent calls open more, then reuse them", async () => {
    const s = await rawServer((r) => setTimeout(() => fine(r), 10));
    open.push(s);
    const c = clientOf(s.addr);
    const burst = () => Promise.all(Array.from({ length: 8 }, () => c.unary(PATH, JSON_TYPE, Buffer.from("{}"))));
    await burst();
    await burst();
    expect(s.counts()).toEqual({ connections: 8, requests: 16 });
  });

  it("a connection the colony resets between calls: the next call opens a new one", async () => {
    const s = await rawServer((r) => {
      fine(r);
      setTimeout(() => r.socket.resetAndDestroy(), 10);
    });
    open.push(s);
    const c = clientOf(s.addr);
    await calls(c, 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(await calls(c, 1)).toEqual(["{}"]);
    expect(s.counts()).toEqual({ connections: 2, requests: 2 });
  });

  it("a kept-alive connection the colony drops as a call goes out: sent once more, on a new one", async () => {
    // The race of every keep-alive client: the server closes an idle connection just as the next
    // request is written on it.
    const s = await rawServer((r) => (r.onConnection === 0 ? fine(r) : r.socket.resetAndDestroy()));
    open.push(s);
    const c = clientOf(s.addr);
    expect(await calls(c, 3)).toEqual(["{}", "{}", "{}"]);
    expect(s.counts()).toEqual({ connections: 3, requests: 5 });
  });

  it("…and only once: a new connection that fails too is reported", async () => {
    let n = 0;
    const s = await rawServer((r) => (n++ === 0 ? fine(r) : r.socket.end()));
    open.push(s);
    const c = clientOf(s.addr);
    await calls(c, 1);
    const e = await c.unary(PATH, JSON_TYPE, Buffer.from("{}")).catch((x: unknown) => x);
    expect((await c.failure(e)).message).toBe(`colony at ${s.addr} closed the connection (it may be restarting after a runaway query) — retry`);
    expect(s.counts()).toEqual({ connections: 2, requests: 3 });
  });

  it("a first call on a new connection is never sent twice", async () => {
    const s = await rawServer((r) => r.socket.end());
    open.push(s);
    const c = clientOf(s.addr);
    const e = await c.unary(PATH, JSON_TYPE, Buffer.from("{}")).catch((x: unknown) => x);
    expect((await c.failure(e)).code).toBe("unavailable");
    expect(s.counts()).toEqual({ connections: 1, requests: 1 });
  });

  it("an answer that was under way when the connection broke is not sent again", async () => {
    const s = await rawServer((r) => (r.onConnection === 0 ? fine(r) : r.socket.end("HTTP/1.1 200 OK\r\n")));
    open.push(s);
    const c = clientOf(s.addr);
    await calls(c, 1);
    await expect(c.unary(PATH, JSON_TYPE, Buffer.from("{}"))).rejects.toThrow("socket hang up");
    expect(s.counts()).toEqual({ connections: 1, requests: 2 });
  });

  it("not kept: after Connection: close, a body read to the close, bytes past the answer, Keep-Alive: timeout=1", async () => {
    for (const answer of [
      `${OK}content-length: 2\r\nconnection: close\r\n\r\n{}`,
      `HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`,
      `${OK}content-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n`,
      `${OK}content-length: 2\r\nkeep-alive: timeout=1\r\n\r\n{}`,
    ]) {
      const s = await rawServer((r) => r.socket.write(answer));
      open.push(s);
      expect(await calls(clientOf(s.addr), 2)).toEqual(["{}", "{}"]);
      expect(s.counts()).toEqual({ connections: 2, requests: 2 });
    }
  });

  it("Keep-Alive: timeout=0 is not kept; a timeout that is not a whole number is ignored (kept), as node:http's Agent does", async () => {
    for (const [hint, connections] of [
      ["timeout=0", 2],
      ["timeout=-5", 1],
      ["timeout=soon", 1],
      ["max=3", 1],
      ["timeout=99999999999999999999", 1],
    ] as const) {
      const s = await rawServer((r) => r.socket.write(`${OK}content-length: 2\r\nkeep-alive: ${hint}\r\n\r\n{}`));
      open.push(s);
      expect(await calls(clientOf(s.addr), 2)).toEqual(["{}", "{}"]);
      expect([hint, s.counts()]).toEqual([hint, { connections, requests: 2 }]);
    }
  });

  it("a colony on IPv6 ([::1]:port): served, the connection kept", async () => {
    const s = await rawServer((r) => r.socket.write(`${OK}content-length: 2\r\n\r\n{}`), "::1");
    open.push(s);
    expect(await calls(clientOf(s.addr), 2)).toEqual(["{}", "{}"]);
    expect(s.counts()).toEqual({ connections: 1, requests: 2 });
  });

  it("kept: HTTP/1.0 with Connection: keep-alive, Keep-Alive: timeout=30", async () => {
    for (const answer of [
      `HTTP/1.0 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n{}`,
      `${OK}content-length: 2\r\nkeep-alive: timeout=30\r\n\r\n{}`,
    ]) {
      const s = await rawServer((r) => r.socket.write(answer));
      open.push(s);
      expect(await calls(clientOf(s.addr), 2)).toEqual(["{}", "{}"]);
      expect(s.counts()).toEqual({ connections: 1, requests: 2 });
    }
  });

  it("101 Switching Protocols: not a colony, where node:http would wait forever", async () => {
    const s = await rawServer((r) => r.socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"));
    open.push(s);
    const c = clientOf(s.addr);
    const e = await c.unary(PATH, JSON_TYPE, Buffer.from("{}")).catch((x: unknown) => x);
    expect((await c.failure(e)).message).toMatch(/did not answer as a Coral colony \(HTTP 101\)/);
  });

  it("a kept-alive connection that fails long after the request went out: not sent again", async () => {
    // A colony worker restarting after a runaway query drops its connections after working on the
    // query: a retry would run it again.
    const s = await rawServer((r) => (r.onConnection === 0 ? fine(r) : setTimeout(() => r.socket.destroy(), 2_100)));
    open.push(s);
    const c = clientOf(s.addr);
    await calls(c, 1);
    await expect(c.unary(PATH, JSON_TYPE, Buffer.from("{}"))).rejects.toThrow("socket hang up");
    expect(s.counts()).toEqual({ connections: 1, requests: 2 });
  });

  it("close(): a call in flight on a kept-alive connection fails as a dropped one, is not sent again, and the client works after", async () => {
    let hold = true;
    const s = await rawServer((r) => (r.onConnection === 0 || !hold ? fine(r) : undefined));
    open.push(s);
    const c = clientOf(s.addr);
    await calls(c, 1);
    const pending = c.unary(PATH, JSON_TYPE, Buffer.from("{}")).catch((x: unknown) => x);
    await new Promise((r) => setTimeout(r, 50));
    c.close();
    expect(await pending).toMatchObject({ code: "ECONNRESET", message: "socket hang up" });
    expect((await c.failure(await pending)).code).toBe("unavailable");
    hold = false;
    expect(await calls(c, 1)).toEqual(["{}"]);
    expect(s.counts()).toEqual({ connections: 2, requests: 3 });
  });
});
