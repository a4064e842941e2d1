import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListServicesRequestSchema, QueryService, StreamQueryRequestSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { CLOSE_GRACE_MS, connectionBudget, DEFAULT_LIMITS, listen, type ConnectionLimits, type Listener } from "./listen.js";

// The limits in-process and short, so each timeout can be watched firing; colony processes with
// the default limits are tested end to end in test/hostile/http.test.ts.
const LIMITS: ConnectionLimits = {
  firstBytesTimeoutMs: 300,
  headersTimeoutMs: 400,
  requestTimeoutMs: 800,
  idleTimeoutMs: 500,
  stallTimeoutMs: 700,
  maxConnections: 64,
};
const TOKEN = "limits-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const LIST = "/coral.colony.v1.QueryService/ListServices";
const STREAM = "/coral.colony.v1.QueryService/StreamQuery";

/** Handlers of StreamQuery that have ended (their finally ran), by the SQL text they were given. */
const ended: string[] = [];
const floods = () => ended.filter((s) => s === "flood").length;
/** Settles when a flood handler beyond the `before` ones has ended (the test's own timeout bounds the wait). */
function floodEnds(before: number): Promise<void> {
  return new Promise((resolve) => {
    const poll = setInterval(() => floods() > before && (clearInterval(poll), resolve()), 10);
  });
}

/**
 * A stand-in QueryService: ListServices answers at once; StreamQuery's "sql" says what to do —
 * `every <ms> <n>`: n small batches, one every ms; `flood`: 256 KiB batches until cancelled.
 */
function routes(router: ConnectRouter): void {
  router.service(QueryService, {
    listServices: () => ({ services: [{ name: "svc", namespace: "ns", instanceCount: 1 }] }),
    async *streamQuery(req, ctx) {
      try {
        const every = /^every (\d+) (\d+)$/.exec(req.sql);
        if (every) {
          for (let i = 0; i < Number(every[2]); i++) {
            await new Promise((r) => setTimeout(r, Number(every[1])));
            yield { rowCount: i };
          }
        } else if (req.sql === "flood") {
          const big = "x".repeat(256 * 1024);
          while (!ctx.signal.aborted) yield { rowCount: 1, valuesJson: big };
        }
      } finally {
        ended.push(req.sql);
      }
    },
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Settles when the server ends the socket (the client never ends it). */
function serverCloses(socket: net.Socket): Promise<void> {
  socket.on("error", () => {});
  socket.resume();
  return new Promise((resolve) => {
    for (const event of ["end", "close", "error"]) socket.once(event, () => resolve());
  });
}

/** How much earlier than this process sees a connection the server may start timing it. */
const SEEN_LATER_MS = 50;

/**
 * When `ended` settles (resolved or rejected), told by two timers started now: before `limitMs`
 * (less SEEN_LATER_MS), or before the limit has run out twice (what the server promises: after a
 * hold-up, a client whose bytes were waiting is given one more period), or later. The server runs
 * in this process, so a loaded machine delays its timers and these alike: what is compared is their
 * order, not the wall clock. The late bound is judged in the loop turn after its timer (as the
 * server judges its own, colony/server/late-timeouts.ts): a loop held up past both runs timers
 * before it reads sockets, and emits 'close' events after the check phase.
 */
async function endsWithin(ended: Promise<unknown>, limitMs: number): Promise<string> {
  const done = settles(ended);
  if (!(await endsAfter(ended, limitMs))) return "before its limit";
  const late = new Promise((resolve) => setTimeout(() => setImmediate(() => setImmediate(resolve)), limitMs + SEEN_LATER_MS));
  await Promise.race([done.promise, late]);
  return done.settled ? IN_TIME : "not before twice its limit";
}
const IN_TIME = "after its limit, before twice it";

/** Whether `ended` is still pending when a timer of `limitMs` (less SEEN_LATER_MS) started now runs. */
async function endsAfter(ended: Promise<unknown>, limitMs: number): Promise<boolean> {
  const done = settles(ended);
  await new Promise((resolve) => setTimeout(resolve, limitMs - SEEN_LATER_MS));
  return !done.settled;
}

function settles(p: Promise<unknown>): { promise: Promise<void>; settled: boolean } {
  const s = { settled: false, promise: Promise.resolve() };
  const set = () => void (s.settled = true);
  s.promise = p.then(set, set);
  return s;
}

/** Reads a whole HTTP/1.1 exchange from a raw socket until the server closes it. */
async function responseText(socket: net.Socket): Promise<string> {
  let text = "";
  socket.setEncoding("latin1").on("data", (d: string) => (text += d));
  socket.on("error", () => {});
  await once(socket, "close");
  return text;
}

/** gRPC / Connect streaming envelope. */
function envelope(payload: Uint8Array, flags = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flags;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** gzip members concatenated inflate to the sum: a ~1 KiB-per-MiB bomb built in milliseconds. */
function gzipBomb(inflatedMiB: number): Buffer {
  const member = gzipSync(Buffer.alloc(2 ** 20));
  return Buffer.concat(Array.from({ length: inflatedMiB }, () => member));
}

function h2Request(port: number, headers: http2.OutgoingHttpHeaders, body?: Buffer) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream = session.request({ ":method": "POST", ...headers }, { endStream: false });
  stream.on("error", () => {});
  if (body) stream.end(body);
  const response = once(stream, "response").then(([h]) => h as http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader);
  return { session, stream, response };
}

describe("query port: the token comes before the body", () => {
  let server: Listener;
  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes, token: TOKEN, limits: LIMITS });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("Connect unary over HTTP/1.1: 401 with Connect's error JSON before any of a 100 MB body is sent, then the connection is closed", async () => {
    const socket = await connect(server.address.port);
    const text = responseText(socket);
    socket.write(
      `POST ${LIST} HTTP/1.1\r\nhost: x\r\ncontent-type: application/proto\r\ncontent-encoding: gzip\r\ncontent-length: 100000000\r\n\r\n`,
    );
    const answer = await text;
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))).toEqual({ code: "unauthenticated", message: "missing or wrong bearer token" });
  });

  it("HTTP/1.1 with a small body: the body is skipped, not parsed, and the connection kept for the next request", async () => {
    const socket = await connect(server.address.port);
    socket.on("error", () => {});
    let text = "";
    socket.setEncoding("latin1").on("data", (d: string) => (text += d));
    // Not a valid message, nor valid gzip: it must never reach a parser or zlib.
    const junk = "\xff".repeat(1000);
    const request = `POST ${LIST} HTTP/1.1\r\nhost: x\r\ncontent-type: application/proto\r\ncontent-encoding: gzip\r\ncontent-length: ${junk.length}\r\n\r\n${junk}`;
    socket.write(request, "latin1");
    await expect.poll(() => text.match(/HTTP\/1\.1 401 /g)?.length ?? 0).toBe(1);
    socket.write(request, "latin1");
    await expect.poll(() => text.match(/HTTP\/1\.1 401 /g)?.length ?? 0).toBe(2);
    expect(text).not.toMatch(/connection: close/i);
    socket.destroy();
  });

  it("gRPC-web over HTTP/1.1: 200 with grpc-status 16 in the headers, body unread", async () => {
    const socket = await connect(server.address.port);
    const text = responseText(socket);
    socket.write(`POST ${LIST} HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 100000000\r\n\r\n`);
    const answer = await text;
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toMatch(/\r\ngrpc-status: 16\r\n/i);
  });

  it("Connect streaming over HTTP/1.1: 200 and an end-of-stream message carrying unauthenticated", async () => {
    const socket = await connect(server.address.port);
    const text = responseText(socket);
    socket.write(`POST ${STREAM} HTTP/1.1\r\nhost: x\r\ncontent-type: application/connect+proto\r\ncontent-length: 100000000\r\n\r\n`);
    const answer = Buffer.from(await text, "latin1");
    const body = answer.subarray(answer.indexOf("\r\n\r\n") + 4);
    expect(body[0]).toBe(0b10);
    expect(JSON.parse(body.subarray(5, 5 + body.readUInt32BE(1)).toString())).toEqual({
      error: { code: "unauthenticated", message: "missing or wrong bearer token" },
    });
  });

  it("gRPC over HTTP/2: trailers-only grpc-status 16 while the request body is still open", async () => {
    const { session, stream, response } = h2Request(server.address.port, {
      ":path": LIST,
      "content-type": "application/grpc",
      "grpc-encoding": "gzip",
    });
    try {
      const headers = await response;
      expect(headers[":status"]).toBe(200);
      expect(headers["grpc-status"]).toBe("16");
      expect(decodeURIComponent(String(headers["grpc-message"]))).toBe("missing or wrong bearer token");
      expect(stream.writableEnded).toBe(false); // we never ended the request: it was not needed
    } finally {
      session.destroy();
    }
  });

  it("real clients still get through with the token, and are refused without it", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: `http://127.0.0.1:${server.address.port}`, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}` }),
    ]) {
      const client = createClient(QueryService, transport);
      expect((await client.listServices({}, { headers: AUTH })).services[0]!.name).toBe("svc");
      await expect(client.listServices({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    }
  });
});

describe("query port: request messages are capped after decompression", () => {
  let server: Listener;
  const readMaxBytes = 1 << 20;
  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes, token: TOKEN, limits: LIMITS, readMaxBytes });
  });
  afterAll(async () => {
    await server?.close();
  });
  const url = () => `http://127.0.0.1:${server.address.port}${LIST}`;

  it("the bomb used below does inflate far beyond the cap", async () => {
    const { gunzipSync } = await import("node:zlib");
    expect(gunzipSync(gzipBomb(64)).length).toBe(64 * 2 ** 20);
    expect(gzipBomb(64).length).toBeLessThan(128 * 1024);
  });

  it("Connect unary, content-encoding gzip: resource_exhausted, not 64 MiB inflated", async () => {
    const res = await fetch(url(), {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/proto", "content-encoding": "gzip" },
      body: new Uint8Array(gzipBomb(64)),
    });
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toContain(`readMaxBytes ${readMaxBytes}`);
  });

  it("gRPC, grpc-encoding gzip on the message: grpc-status 8 (resource exhausted)", async () => {
    const { session, response, stream } = h2Request(
      server.address.port,
      { ":path": LIST, "content-type": "application/grpc", "grpc-encoding": "gzip", ...AUTH },
      envelope(gzipBomb(64), 1),
    );
    try {
      const headers = await response;
      const trailers = headers["grpc-status"] !== undefined ? headers : ((await once(stream, "trailers"))[0] as http2.IncomingHttpHeaders);
      expect(trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
    } finally {
      session.destroy();
    }
  });

  it("Connect streaming, connect-content-encoding gzip: resource_exhausted in the end-of-stream message", async () => {
    const res = await fetch(`http://127.0.0.1:${server.address.port}${STREAM}`, {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/connect+proto", "connect-content-encoding": "gzip" },
      body: new Uint8Array(envelope(gzipBomb(64), 1)),
    });
    const body = Buffer.from(await res.arrayBuffer());
    expect(body[0]).toBe(0b10);
    expect(JSON.parse(body.subarray(5).toString()).error.code).toBe("resource_exhausted");
  });

  it("deflate, brotli and unknown encodings: unimplemented, naming gzip, nothing inflated", async () => {
    const message = toBinary(ListServicesRequestSchema, create(ListServicesRequestSchema, {}));
    for (const [encoding, body] of [
      ["deflate", deflateSync(message)],
      ["br", brotliCompressSync(message)],
      ["zstd", Buffer.from(message)],
    ] as const) {
      const res = await fetch(url(), { method: "POST", headers: { ...AUTH, "content-type": "application/proto", "content-encoding": encoding }, body });
      const json = (await res.json()) as { code: string; message: string };
      expect(json.code, encoding).toBe("unimplemented");
      expect(json.message, encoding).toContain("supported encodings are gzip");
    }
  });

  it("a gzip request within the cap is served", async () => {
    const res = await fetch(url(), {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/proto", "content-encoding": "gzip" },
      body: gzipSync(toBinary(ListServicesRequestSchema, create(ListServicesRequestSchema, {}))),
    });
    expect(res.status).toBe(200);
  });
});

describe("query port: timeouts", () => {
  let server: Listener;
  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes, limits: LIMITS });
  });
  afterAll(async () => {
    await server?.close();
  });
  const port = () => server.address.port;

  it("a socket that sends nothing is closed after firstBytesTimeoutMs", async () => {
    expect(await endsWithin(serverCloses(await connect(port())), LIMITS.firstBytesTimeoutMs)).toBe(IN_TIME);
  });

  it("half an HTTP/2 preface, then silence: closed after firstBytesTimeoutMs", async () => {
    const socket = await connect(port());
    const closed = endsWithin(serverCloses(socket), LIMITS.firstBytesTimeoutMs);
    socket.write("PRI * HTTP/2.0\r\n");
    expect(await closed).toBe(IN_TIME);
  });

  it("HTTP/1.1 headers at one byte every 100 ms (slowloris): closed after headersTimeoutMs", async () => {
    const socket = await connect(port());
    const closed = endsWithin(serverCloses(socket), LIMITS.headersTimeoutMs);
    const request = `GET ${LIST} HTTP/1.1\r\nhost: x\r\nx-padding: ${"a".repeat(200)}\r\n\r\n`;
    let i = 0;
    const drip = setInterval(() => (i < request.length && !socket.destroyed ? socket.write(request[i++]!) : clearInterval(drip)), 100);
    try {
      expect(await closed).toBe(IN_TIME);
    } finally {
      clearInterval(drip);
    }
  });

  it("HTTP/1.1 body trickling after the headers: closed after requestTimeoutMs", async () => {
    const socket = await connect(port());
    const closed = endsWithin(serverCloses(socket), LIMITS.requestTimeoutMs);
    socket.write(`POST ${LIST} HTTP/1.1\r\nhost: x\r\ncontent-type: application/proto\r\ncontent-length: 1000\r\n\r\n`);
    const drip = setInterval(() => (!socket.destroyed ? socket.write("\0") : clearInterval(drip)), 100);
    try {
      expect(await closed).toBe(IN_TIME);
    } finally {
      clearInterval(drip);
    }
  });

  it("HTTP/1.1 keep-alive: an idle connection is closed after idleTimeoutMs (Node adds 1 s)", async () => {
    const socket = await connect(port());
    const text: string[] = [];
    socket.setEncoding("latin1").on("data", (d: string) => text.push(d));
    // From before the request: the server's idle timer starts when its answer is written, and this
    // side reads it later (a turn or a hold-up later).
    const closed = endsWithin(serverCloses(socket), LIMITS.idleTimeoutMs + 1_000);
    socket.write(`POST ${LIST} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`);
    await once(socket, "data");
    expect(text.join("")).toMatch(/^HTTP\/1\.1 200 /);
    expect(await closed).toBe(IN_TIME);
  });

  it("HTTP/2: the preface but no SETTINGS frame: closed after headersTimeoutMs", async () => {
    const socket = await connect(port());
    const closed = endsWithin(serverCloses(socket), LIMITS.headersTimeoutMs);
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(await closed).toBe(IN_TIME);
  });

  it("HTTP/2: a session without streams is closed (GOAWAY) after idleTimeoutMs", async () => {
    // From before the connection: the server's idle timer starts when the session is set up, so a
    // later start made the goaway look 1 ms early now and then.
    const session = http2.connect(`http://127.0.0.1:${port()}`);
    const goaway = endsWithin(once(session, "goaway"), LIMITS.idleTimeoutMs);
    session.on("error", () => {});
    const closed = once(session, "close");
    await once(session, "remoteSettings");
    const client = createClient(QueryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port()}` }));
    await client.listServices({});
    expect(await goaway).toBe(IN_TIME);
    await closed;
  });

  it("HTTP/2: a stream whose body trickles is cancelled after requestTimeoutMs; the session lives on", async () => {
    const { session, stream } = h2Request(port(), { ":path": LIST, "content-type": "application/grpc" });
    try {
      const closed = endsWithin(once(stream, "close"), LIMITS.requestTimeoutMs);
      const drip = setInterval(() => (!stream.destroyed ? stream.write(Buffer.from([0])) : clearInterval(drip)), 100);
      expect(await closed).toBe(IN_TIME);
      clearInterval(drip);
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(session.destroyed).toBe(false);
    } finally {
      session.destroy();
    }
  });

  for (const [name, transport] of [
    ["Connect over HTTP/1.1", (p: number) => createConnectTransport({ baseUrl: `http://127.0.0.1:${p}`, httpVersion: "1.1" })],
    ["gRPC over HTTP/2", (p: number) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${p}` })],
  ] as const) {
    it(`${name}: a stream that keeps sending outlives every timeout`, async () => {
      const client = createClient(QueryService, transport(port()));
      // 3 s in all, longer than the idle, stall and request timeouts together; a batch every 250 ms.
      const t0 = Date.now();
      let batches = 0;
      for await (const _ of client.streamQuery({ sql: "every 250 12" })) batches++;
      expect(batches).toBe(12);
      expect(Date.now() - t0).toBeGreaterThan(LIMITS.idleTimeoutMs + LIMITS.stallTimeoutMs + LIMITS.requestTimeoutMs);
    });
  }

  it("HTTP/1.1: a client that stops reading a stream is cut after stallTimeoutMs, and the handler ends", async () => {
    const socket = await connect(port());
    socket.pause();
    socket.on("error", () => {});
    const body = envelope(toBinary(StreamQueryRequestSchema, create(StreamQueryRequestSchema, { sql: "flood" })));
    socket.write(`POST ${STREAM} HTTP/1.1\r\nhost: x\r\ncontent-type: application/connect+proto\r\ncontent-length: ${body.length}\r\n\r\n`);
    socket.write(body);
    // Not before the stall timeout; how much later is the server's to say: the stall starts once
    // the loopback buffers are full of 256 KiB batches, which took 0.7-1.1 s here, not at once.
    const before = floods();
    const cut = floodEnds(before);
    expect(await endsAfter(cut, LIMITS.stallTimeoutMs)).toBe(true);
    await cut;
    expect(floods()).toBe(before + 1);
    // A paused socket cannot see the server's FIN; reading what was buffered reaches it.
    const closed = once(socket, "close");
    socket.resume();
    await closed;
  });

  it("HTTP/2: a client that stops reading a stream is cut after stallTimeoutMs, and the handler ends", async () => {
    const before = floods();
    const session = http2.connect(`http://127.0.0.1:${port()}`);
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": STREAM, "content-type": "application/grpc" });
    stream.on("error", () => {});
    stream.end(envelope(toBinary(StreamQueryRequestSchema, create(StreamQueryRequestSchema, { sql: "flood" }))));
    stream.pause();
    // As above: from when the buffers are full, which this side cannot see.
    const closed = once(session, "close");
    expect(await endsAfter(closed, LIMITS.stallTimeoutMs)).toBe(true);
    await closed;
    await floodEnds(before);
    expect(floods()).toBe(before + 1);
  });
});

describe("query port: connection cap", () => {
  it("beyond maxConnections new sockets are closed at once; connected clients keep being served", async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes, limits: { ...LIMITS, maxConnections: 4, firstBytesTimeoutMs: 10_000 } });
    const held: net.Socket[] = [];
    try {
      const client = createClient(QueryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}` }));
      await client.listServices({}); // one HTTP/2 connection, kept
      for (let i = 0; i < 3; i++) held.push(await connect(server.address.port));
      let open = held.length;
      for (const s of held) void serverCloses(s).then(() => open--);
      await serverCloses(await connect(server.address.port));
      // At accept, not by the 10 s first-bytes timeout: the sockets accepted before it are all open.
      expect(open).toBe(3);
      expect((await client.listServices({})).services).toHaveLength(1);
      // Served while the cap was reached, not once the idle sockets were gone.
      expect(open).toBe(3);
      // A slot freed is a slot available again.
      held.pop()!.destroy();
      await new Promise((r) => setTimeout(r, 50));
      const again = await connect(server.address.port);
      const closed = serverCloses(again);
      expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r("open"), 300))])).toBe("open");
      again.destroy();
    } finally {
      for (const s of held) s.destroy();
      await server.close();
    }
  });
});

describe("default connection cap", () => {
  it("is 1024 a port unless the open-files limit cannot hold two ports of it and DuckDB's files", () => {
    expect(connectionBudget(20_000)).toBe(1024);
    expect(connectionBudget(1024)).toBe(448);
    expect(connectionBudget(300)).toBe(86);
    expect(connectionBudget(undefined)).toBe(1024);
    expect(DEFAULT_LIMITS.maxConnections).toBeLessThanOrEqual(1024);
  });
});

describe("query port: close()", () => {
  it("cancels a stream the client is not reading and waits for its handler, well within the grace period", async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes, limits: { ...LIMITS, stallTimeoutMs: 60_000 } });
    const session = http2.connect(`http://127.0.0.1:${server.address.port}`);
    session.on("error", () => {});
    try {
      const stream = session.request({ ":method": "POST", ":path": STREAM, "content-type": "application/grpc" });
      stream.on("error", () => {});
      stream.end(envelope(toBinary(StreamQueryRequestSchema, create(StreamQueryRequestSchema, { sql: "flood" }))));
      await once(stream, "response");
      stream.pause();
      await new Promise((r) => setTimeout(r, 300)); // the server's writes are now blocked
      const before = floods();
      // Armed before close() arms its own grace timer of the same length, so it fires first if
      // close() waits the grace out: an order on one loop, not a wall-clock bound.
      const graceRanOut = new Promise((resolve) => setTimeout(() => resolve("the grace period ran out"), CLOSE_GRACE_MS));
      expect(await Promise.race([server.close().then(() => "closed"), graceRanOut])).toBe("closed");
      expect(floods()).toBe(before + 1);
    } finally {
      session.destroy();
    }
  });

  it("a call made after close() is refused", async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes, limits: LIMITS });
    await server.close();
    const client = createClient(QueryService, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.address.port}`, httpVersion: "1.1" }));
    await expect(client.listServices({})).rejects.toBeInstanceOf(ConnectError);
  });
});
