// Attacks found by red-teaming a real colony process that the other hostile suites did not cover.
// Each was reproduced against the colony before it was fixed; the test is the reproduction.
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService, StreamQueryRequestSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";
import { failureOf } from "../helpers/rpc.js";

// Long enough for the stalled streams to fill every buffer between them and their clients first.
const QUERY_TIMEOUT_MS = 5_000;
/** SQL past its deadline is abandoned this much later (SQL_DEFAULTS.abandonAfterMs). */
const ABANDON_AFTER_MS = 2_000;
/** The colony's SQL slots (colony/store/readonly-sql.ts): as many stalled streams as there are. */
const SQL_SLOTS = 4;
const STREAM = "/coral.colony.v1.QueryService/StreamQuery";
/** Far more rows than a socket's buffers hold: the colony's writes back up within milliseconds. */
const ENDLESS_SQL = "SELECT repeat('x', 1000) || i AS s FROM range(100000000) t(i)";

let colony: SpawnedColony;
let client: Client<typeof QueryService>;

beforeAll(async () => {
  colony = await spawnColony({ extraArgs: ["--query-timeout", `${QUERY_TIMEOUT_MS / 1000}s`] });
  await storeServices(colony, ["payments"]);
  client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
}, 180_000);

afterAll(async () => {
  await colony?.stop();
});

function envelope(payload: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/**
 * A gRPC StreamQuery over HTTP/2 that is never read, on a session kept busy with PINGs: the session
 * is never idle, so the connection's stall timeout (which counts bytes on the whole session) never
 * fires for it.
 */
function stalledH2Stream(): { close(): void } {
  const session = http2.connect(colony.baseUrl);
  session.on("error", () => {});
  const stream = session.request({ ":method": "POST", ":path": STREAM, "content-type": "application/grpc" });
  stream.on("error", () => {});
  stream.end(envelope(toBinary(StreamQueryRequestSchema, create(StreamQueryRequestSchema, { sql: ENDLESS_SQL }))));
  stream.pause();
  const pings = setInterval(() => session.destroyed || session.ping(() => {}), 250);
  return {
    close() {
      clearInterval(pings);
      session.destroy();
    },
  };
}

/** The same over HTTP/1.1 (Connect's streaming protocol), from a raw socket that never reads. */
async function stalledH1Stream(): Promise<{ close(): void }> {
  const socket = net.connect(Number(colony.addr.split(":")[1]), colony.addr.split(":")[0]);
  socket.on("error", () => {});
  await once(socket, "connect");
  const body = envelope(Buffer.from(JSON.stringify({ sql: ENDLESS_SQL })));
  socket.write(`POST ${STREAM} HTTP/1.1\r\nhost: x\r\ncontent-type: application/connect+json\r\ncontent-length: ${body.length}\r\n\r\n`);
  socket.write(body);
  socket.pause();
  return { close: () => socket.destroy() };
}

describe("streams nobody reads", () => {
  it(`${SQL_SLOTS} StreamQuery calls whose clients stop reading (HTTP/2 kept alive by PINGs, HTTP/1.1) give their SQL slots back at the query timeout`, async () => {
    const held = [stalledH2Stream(), stalledH2Stream(), await stalledH1Stream(), await stalledH1Stream()];
    try {
      // Long enough for all four to be admitted and back up, and to be abandoned past their deadline.
      await new Promise((r) => setTimeout(r, QUERY_TIMEOUT_MS + ABANDON_AFTER_MS + 1_000));
      // Before, the four kept their slots for as long as their connections lived (PINGs: forever),
      // and every other client's SQL waited its whole timeout for one: deadline_exceeded.
      const r = await client.executeQuery({ sql: "SELECT 42 AS answer" });
      expect(r.rows[0]?.values[0]?.kind).toEqual({ case: "numberValue", value: 42 });
    } finally {
      for (const h of held) h.close();
    }
  });

  it("a client that takes the next batch after the query timeout is told the stream was cut, not given a short result", async () => {
    const batches = client.streamQuery({ sql: ENDLESS_SQL });
    const it = batches[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    await new Promise((r) => setTimeout(r, QUERY_TIMEOUT_MS + ABANDON_AFTER_MS + 1_000));
    const e = await failureOf(
      (async () => {
        for (let r = await it.next(); !r.done; r = await it.next());
      })(),
    );
    expect(e.code).toBe(Code.DeadlineExceeded);
  });
});

describe("request fields at their worst values", () => {
  it("a NaN percentile is refused (invalid_argument), on GetPercentile and GetExemplars", async () => {
    // NaN compares false with both bounds, so it passed the (0, 1] check and was answered with the
    // window's maximum latency as if it were a percentile.
    for (const call of [
      () => client.getPercentile({ service: "payments", percentile: NaN }),
      () => client.getExemplars({ service: "payments", exemplars: 1, percentile: NaN }),
    ]) {
      const e = await failureOf(call());
      expect(e.code).toBe(Code.InvalidArgument);
      expect(e.message).toBe("percentile must be in (0, 1]; got NaN");
    }
  });

  it("a 3 MB service name over gRPC: not_found quoting 40 characters of it, not a 3 MB grpc-message trailer", async () => {
    const grpc = createClient(QueryService, transports["gRPC"]!(colony.baseUrl));
    const name = "\u001b[31m" + "s".repeat(3_000_000);
    for (const call of [() => grpc.getService({ service: name }), () => grpc.getErrorRate({ service: name })]) {
      const e = await failureOf(call());
      expect(e.code, e.message.slice(0, 200)).toBe(Code.NotFound);
      expect(e.message).toBe(`service "\\u001b[31m${"s".repeat(35)}…" not found — list services with: coral query services`);
    }
  });

  it("SQL errors quoting 300 KB of the SQL over gRPC: invalid_argument with the start of the message, not a broken stream", async () => {
    const grpc = createClient(QueryService, transports["gRPC"]!(colony.baseUrl));
    // Far over the 16 KiB HTTP/2 frame a trailer must fit in; 3 MB took DuckDB seconds to parse.
    const big = "s".repeat(300_000);
    for (const sql of [`SELECT ${big}`, `SELECT CAST('${big}' AS INTEGER)`, `SELECT * FROM ${big}`]) {
      for (const call of [
        () => grpc.executeQuery({ sql }),
        async () => {
          for await (const _ of grpc.streamQuery({ sql }));
        },
      ]) {
        const e = await failureOf(call());
        expect(e.code, e.message.slice(0, 200)).toBe(Code.InvalidArgument);
        expect(e.message).toMatch(/^(?:Binder Error: |Conversion Error: |table ").*sssss… \(\d+ more characters\)$/s);
        expect(e.message.length).toBeLessThan(1_100);
      }
    }
  });
});

describe("JSON request bodies nested deep", () => {
  // 1.5 million levels in 3 MB (under the 4 MiB read limit): JSON.parse took 3.3 s on them in plain
  // Node and held the colony's event loop 5 s per request (every RPC and OTLP export waited),
  // before the request was refused for its field's type anyway.
  const LEVELS = 1_500_000;
  const deep = (field: string) => `{"${field}":${"[".repeat(LEVELS)}${"]".repeat(LEVELS)}}`;
  const LIST = "/coral.colony.v1.QueryService/ListServices";

  it("Connect JSON (plain, gzip, an unknown field) and gRPC+JSON: invalid_argument naming the nesting, before the text is parsed", async () => {
    const post = (body: Buffer, headers: Record<string, string> = {}) =>
      fetch(colony.baseUrl + LIST, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: new Uint8Array(body) });
    const calls: [string, () => Promise<Response>][] = [
      ["Connect JSON", () => post(Buffer.from(deep("namespace")))],
      ["Connect JSON, gzip", () => post(gzipSync(deep("namespace")), { "content-encoding": "gzip" })],
      // Ignored after parsing, as unknown fields are: the parse was the cost.
      ["an unknown field", () => post(Buffer.from(deep("smuggled")))],
    ];
    for (const [what, call] of calls) {
      const answer = (await (await call()).json()) as { code: string; message: string };
      expect(answer.code, what).toBe("invalid_argument");
      expect(answer.message, what).toMatch(/^JSON nested more than 64 levels deep/);
    }
    const session = http2.connect(colony.baseUrl);
    try {
      const stream = session.request({ ":method": "POST", ":path": LIST, "content-type": "application/grpc+json", te: "trailers" });
      stream.end(envelope(Buffer.from(deep("namespace"))));
      stream.resume();
      const [trailers] = (await once(stream, "trailers")) as [http2.IncomingHttpHeaders];
      expect(trailers["grpc-status"]).toBe("3");
      expect(decodeURIComponent(String(trailers["grpc-message"]))).toMatch(/^JSON nested more than 64 levels deep/);
    } finally {
      session.destroy();
    }
  });
});
