// Answers clients do not read, in-process with small limits so each can be watched; the colony
// process with its defaults is tested end to end in test/hostile/unread-answers.test.ts.
import { once } from "node:events";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { DEFAULT_LIMITS, listen, type Listener } from "./listen.js";

const MAX_UNSENT = 8 * 2 ** 20;
/**
 * One answer: 3/8 of the budget, so three unread HTTP/2 ones fill it for as long as they are unread
 * (flow control lets only 64 KiB of each leave; an HTTP/1.1 one shrinks as the kernel buffers it).
 */
const ANSWER_BYTES = 3 * 2 ** 20;
const STALL_MS = 700;
const STREAM = "/coral.colony.v1.QueryService/StreamQuery";
const EXECUTE = "/coral.colony.v1.QueryService/ExecuteQuery";

/** StreamQuery handlers that have ended, by their SQL text. */
const ended: string[] = [];

/** ExecuteQuery answers one string of ANSWER_BYTES; StreamQuery "flood" sends 256 KiB batches until cancelled, "wait <ms>" one batch after ms. */
function routes(router: ConnectRouter): void {
  router.service(QueryService, {
    listServices: () => ({ services: [{ name: "svc", namespace: "ns", instanceCount: 1 }] }),
    executeQuery: () => ({ rows: [{ values: [{ kind: { case: "stringValue", value: "x".repeat(ANSWER_BYTES) } }] }] }),
    async *streamQuery(req, ctx) {
      try {
        const wait = /^wait (\d+)$/.exec(req.sql);
        if (wait) {
          await new Promise((r) => setTimeout(r, Number(wait[1])));
          yield { rowCount: 1 };
        }
        const big = "x".repeat(256 * 1024);
        while (req.sql === "flood" && !ctx.signal.aborted) yield { rowCount: 1, valuesJson: big };
      } finally {
        ended.push(req.sql);
      }
    },
  });
}

let listener: Listener;
let base: string;

beforeAll(async () => {
  listener = await listen({ host: "127.0.0.1", port: 0, routes, maxUnsentBytes: MAX_UNSENT, limits: { ...DEFAULT_LIMITS, stallTimeoutMs: STALL_MS } });
  base = `http://127.0.0.1:${listener.address.port}`;
});

afterAll(async () => {
  await listener?.close();
});

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

/** An HTTP/2 session, kept busy with PINGs, asking for `path` and never reading the answer. */
function unreadH2(path: string, body: string, contentType = "application/json"): { session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream; close(): void } {
  const session = http2.connect(base);
  session.on("error", () => {});
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": contentType });
  stream.on("error", () => {});
  stream.end(body);
  stream.pause();
  const pings = setInterval(() => session.destroyed || session.ping(() => {}), 100);
  return {
    session,
    stream,
    close() {
      clearInterval(pings);
      session.destroy();
    },
  };
}

/** The same over HTTP/1.1, from a raw socket that never reads. */
async function unreadH1(path: string, body: string): Promise<{ close(): void }> {
  const socket = net.connect(listener.address.port, "127.0.0.1");
  socket.on("error", () => {});
  await once(socket, "connect");
  socket.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  socket.pause();
  return { close: () => socket.destroy() };
}

function envelope(payload: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

describe("answers nobody reads", () => {
  it("past maxUnsentBytes new calls are refused with resource_exhausted (Connect and gRPC) until the readers go, then served", async () => {
    const readers = [...Array.from({ length: 4 }, () => unreadH2(EXECUTE, "{}")), await unreadH1(EXECUTE, "{}")];
    await until(() => listener.unsentBytes >= MAX_UNSENT);
    for (const transport of [createConnectTransport({ baseUrl: base, httpVersion: "1.1" }), createGrpcTransport({ baseUrl: base })]) {
      const err = await createClient(QueryService, transport)
        .listServices({})
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err?.code).toBe(Code.ResourceExhausted);
      expect(err?.rawMessage).toMatch(/bytes of answers its clients have not read yet: retry later/);
    }
    // Bounded by the budget plus the answers admitted before it filled, never by the readers' number.
    expect(listener.unsentBytes).toBeLessThan(MAX_UNSENT + 3 * ANSWER_BYTES);
    for (const r of readers) r.close();
    await until(() => listener.unsentBytes === 0);
    const client = createClient(QueryService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    expect((await client.listServices({})).services).toHaveLength(1);
    expect((await client.executeQuery({ sql: "x" })).rows).toHaveLength(1);
  });

  it("an HTTP/2 stream whose client PINGs and never reads is cancelled after the stall timeout, and its handler ends", async () => {
    const floods = () => ended.filter((s) => s === "flood").length;
    const before = floods();
    const reader = unreadH2(STREAM, envelope(Buffer.from(JSON.stringify({ sql: "flood" }))).toString("latin1"), "application/grpc+json");
    await Promise.all([once(reader.stream, "close"), until(() => floods() > before)]);
    expect(reader.stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    // The stream, not the session: its other calls go on.
    expect(reader.session.destroyed).toBe(false);
    reader.close();
    await until(() => listener.unsentBytes === 0);
  });
});

describe("bodies that fail to decode over HTTP/1.1", () => {
  // 200 KB of a message whose field has the wrong type: read in several chunks, so connect-es
  // stops reading before the body has all arrived.
  const invalid = Buffer.from(JSON.stringify({ namespace: Array.from({ length: 100_000 }, () => 1) }));

  function post(path: string, contentType: string, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${base}${path}`, { method: "POST", agent: false, headers: { "content-type": contentType, "content-length": body.length } }, (res) => {
        let text = "";
        res.setEncoding("latin1").on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  it("gRPC-web+JSON: the client gets invalid_argument, not a closed connection", async () => {
    const res = await post("/coral.colony.v1.QueryService/ListServices", "application/grpc-web+json", envelope(invalid));
    expect(res.status).toBe(200);
    expect(`${res.headers["grpc-status"] ?? ""}${res.body}`).toMatch(/grpc-status:\s*3|^3/);
  });

  it("Connect streaming JSON: the client gets an end-of-stream error, not a closed connection", async () => {
    const res = await post(STREAM, "application/connect+json", envelope(Buffer.from(JSON.stringify({ sql: [1, ...Array.from({ length: 100_000 }, () => 1)] }))));
    expect(res.status).toBe(200);
    expect(res.body).toMatch(/"code":"invalid_argument"/);
  });
});

describe("many calls at once", () => {
  it("20 concurrent calls print no MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const client = createClient(QueryService, createGrpcTransport({ baseUrl: base }));
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          for await (const _ of client.streamQuery({ sql: "wait 200" }));
        }),
      );
      // Node emits process warnings on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
  });
});
