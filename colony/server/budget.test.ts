// The byte budget shared by both ports (ByteBudget, Slots), and the query port's budget for
// request messages in flight, in process with a small budget.
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient, type ConnectRouter } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ExecuteQueryRequestSchema, QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { ByteBudget, Slots } from "../admission.js";
import { listen, type Listener } from "./listen.js";

const MIB = 2 ** 20;
const EXECUTE = "/coral.colony.v1.QueryService/ExecuteQuery";

describe("ByteBudget", () => {
  it("takes what fits, refuses what does not, and lets one request alone exceed it", () => {
    const budget = new ByteBudget(100);
    const a = budget.lease();
    const b = budget.lease();
    expect(a.take(150)).toBe(true); // alone: an idle port takes any one request
    expect(b.take(1)).toBe(false);
    a.release();
    expect(budget.used).toBe(0);
    expect(a.take(60)).toBe(false); // released leases take nothing more
    expect(b.take(60)).toBe(true);
    const c = budget.lease();
    expect(c.take(40)).toBe(true);
    expect(c.take(1)).toBe(false);
    c.add(10); // bytes that exist already are counted past the limit
    expect(budget.used).toBe(110);
    expect(c.bytes).toBe(50);
    c.release();
    c.release();
    b.release();
    expect(budget.used).toBe(0);
  });
});

describe("Slots", () => {
  it("serves waiters in order, at most `size` at once; an aborted waiter leaves the queue", async () => {
    const slots = new Slots(2);
    const order: string[] = [];
    const f1 = await slots.acquire();
    const f2 = await slots.acquire();
    const gone = new AbortController();
    const w3 = slots.acquire().then((f) => (order.push("3"), f));
    const w4 = slots.acquire(gone.signal).then(
      (f) => (order.push("4"), f),
      (err: unknown) => (order.push(`4 aborted: ${(err as Error).message}`), undefined),
    );
    const w5 = slots.acquire().then((f) => (order.push("5"), f));
    expect(slots.waiting).toBe(3);
    gone.abort(new Error("client gone"));
    await w4;
    expect(slots.waiting).toBe(2);
    f1();
    f1(); // freeing twice frees once
    const f3 = await w3;
    expect(slots.active).toBe(2);
    f2();
    const f5 = await w5;
    expect(order).toEqual(["4 aborted: client gone", "3", "5"]);
    f3();
    f5();
    expect(slots.active).toBe(0);
    await expect(slots.acquire(AbortSignal.abort(new Error("already")))).rejects.toThrow("already");
  });
});

// --- the query port ------------------------------------------------------------------------------

/** ExecuteQuery answers with its SQL's length; StreamQuery streams until its caller goes. */
function routes(router: ConnectRouter): void {
  router.service(QueryService, {
    executeQuery: (req) => ({ columns: [{ name: String(req.sql.length) }] }),
    async *streamQuery(_req, ctx) {
      while (!ctx.signal.aborted) {
        await new Promise((r) => setTimeout(r, 20));
        yield { rowCount: 1 };
      }
    },
  });
}

const BUDGET = 4 * MIB;
const READ_MAX = 2 * MIB;

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

function received(socket: net.Socket) {
  let text = "";
  socket.setEncoding("latin1").on("data", (d: string) => (text += d));
  socket.on("error", () => {});
  return () => text;
}

/** An ExecuteQuery request message of about `bytes` (its SQL is that long). */
const message = (bytes: number) => Buffer.from(toBinary(ExecuteQueryRequestSchema, create(ExecuteQueryRequestSchema, { sql: "x".repeat(bytes) })));

/** A Connect unary request (HTTP/1.1) whose first `sent` bytes of body go now. */
function connectUnary(socket: net.Socket, body: Buffer, sent: number, extra = ""): void {
  socket.write(Buffer.concat([Buffer.from(`POST ${EXECUTE} HTTP/1.1\r\nhost: x\r\ncontent-type: application/proto\r\ncontent-length: ${body.length}\r\n${extra}\r\n`), body.subarray(0, sent)]));
}

describe("query port: request messages in flight share one budget", () => {
  let server: Listener;
  let holders: net.Socket[] = [];
  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes, readMaxBytes: READ_MAX, maxInflightBytes: BUDGET });
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(async () => {
    for (const s of holders) s.destroy();
    holders = [];
    await expect.poll(() => server.inflightBytes).toBe(0);
  });

  /** Two calls that declared 2 MiB bodies and sent 10 bytes of them: 4 MiB, the whole budget. */
  async function fillBudget(): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const s = await connect(server.address.port);
      s.on("error", () => {});
      connectUnary(s, message(READ_MAX - 16), 10);
      holders.push(s);
    }
    await expect.poll(() => server.inflightBytes).toBeGreaterThanOrEqual(BUDGET - 64);
  }

  it("calls of every kind give their bytes back once decoded, a stream while it still runs", async () => {
    const url = `http://127.0.0.1:${server.address.port}`;
    for (const transport of [createConnectTransport({ baseUrl: url, httpVersion: "1.1" }), createConnectTransport({ baseUrl: url, httpVersion: "2" }), createGrpcTransport({ baseUrl: url })]) {
      const client = createClient(QueryService, transport);
      expect((await client.executeQuery({ sql: "x".repeat(MIB) })).columns[0]?.name).toBe(String(MIB));
      const stream = client.streamQuery({ sql: "x".repeat(MIB) })[Symbol.asyncIterator]();
      await stream.next();
      expect(server.inflightBytes).toBe(0);
      await stream.return?.();
    }
  });

  it("Connect over HTTP/1.1: a declared length that does not fit gets 429 resource_exhausted before its body; the rest is dropped and the connection kept", async () => {
    await fillBudget();
    const s = await connect(server.address.port);
    holders.push(s);
    const text = received(s);
    const body = message(MIB);
    connectUnary(s, body, 0);
    await expect.poll(text).toMatch(/\r\n\r\n\{.*\}/);
    expect(text()).toMatch(/^HTTP\/1\.1 429 /);
    expect(text()).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(JSON.parse(text().slice(text().indexOf("\r\n\r\n") + 4))).toMatchObject({ code: "resource_exhausted" });
    // The client still sends what it promised, then its next call is served on the same connection.
    s.write(body);
    for (const h of holders.splice(0, 2)) h.destroy();
    await expect.poll(() => server.inflightBytes).toBe(0);
    connectUnary(s, message(100), message(100).length);
    await expect.poll(text).toMatch(/HTTP\/1\.1 200 /);
  });

  it("gRPC (HTTP/2, no declared length): counted as it arrives, grpc-status 8 once past the budget", async () => {
    await fillBudget();
    const session = http2.connect(`http://127.0.0.1:${server.address.port}`);
    session.on("error", () => {});
    try {
      const stream = session.request({ ":method": "POST", ":path": EXECUTE, "content-type": "application/grpc", te: "trailers" });
      stream.on("error", () => {});
      const payload = message(MIB);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(payload.length, 1);
      stream.write(Buffer.concat([prefix, payload]));
      stream.end();
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("trailers", (t) => (trailers = t));
      stream.resume();
      await once(stream, "close");
      expect({ ...headers, ...trailers }).toMatchObject({ "grpc-status": String(Code.ResourceExhausted) });
    } finally {
      session.destroy();
    }
  });

  it("a compressed call also reserves what it may inflate to", async () => {
    for (const size of [1.5 * MIB, MIB]) {
      const s = await connect(server.address.port);
      holders.push(s);
      s.on("error", () => {});
      connectUnary(s, message(size), 10);
    }
    await expect.poll(() => server.inflightBytes).toBeGreaterThan(2.5 * MIB);
    // 2.5 MiB held of 4: a small call fits, a small gzip call (room for 2 MiB inflated) does not.
    const client = createClient(QueryService, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.address.port}`, httpVersion: "1.1" }));
    expect((await client.executeQuery({ sql: "small" })).columns[0]?.name).toBe("5");
    const gzipped = gzipSync(message(10));
    const z = await connect(server.address.port);
    holders.push(z);
    const text = received(z);
    connectUnary(z, gzipped, gzipped.length, "content-encoding: gzip\r\n");
    await expect.poll(text).toMatch(/^HTTP\/1\.1 429 /);
    await expect(createClient(QueryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}`, sendCompression: compressionGzip, compressMinBytes: 0 })).executeQuery({ sql: "gz" })).rejects.toThrow(
      expect.objectContaining({ code: Code.ResourceExhausted }),
    );
  });

  it("a client gone mid-body gives its bytes back", async () => {
    const s = await connect(server.address.port);
    s.on("error", () => {});
    connectUnary(s, message(MIB), 1000);
    await expect.poll(() => server.inflightBytes).toBeGreaterThan(0);
    s.destroy();
  });
});
