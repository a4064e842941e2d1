// A colony that fails is reported the same way by `coral query`, `coral mcp` and `coral run`: each
// case below goes through the three surfaces' own code (the CLI's describeRpcError, the MCP tool
// call, the broker's failure for a script's CoralError), over the one client, against a real colony
// or a server that misbehaves on cue, for a unary call and for a stream.
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService, StreamQueryResponseSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { callTool, queryTools } from "../../mcp/tools.js";
import { closedPort, spawnColony, type SpawnedColony } from "../../test/helpers/colony.js";
import { connectColony } from "../run/broker-rpc.js";
import { ColonyClient, type ClientLimits } from "./client.js";
import { resolveColony } from "./colony-address.js";
import { envelope } from "./connect-stream.js";
import { describeRpcError } from "./errors.js";
import { colonyTransport } from "./transport.js";

const TOKEN = "s3cret-token";

type Kind = "unary" | "stream";

/** What each surface says: the CLI's line, the MCP tool's error text, the script's CoralError. */
interface Said {
  cli: string;
  mcp: string;
  run: { code: string; message: string };
}

async function say(addr: string, token: string | undefined, kind: Kind, limits: Partial<ClientLimits> = {}): Promise<Said> {
  const address = resolveColony(addr);
  const client = new ColonyClient(address, token, limits);
  const transport = colonyTransport(client);
  const signal = new AbortController().signal;
  try {
    const query = createClient(QueryService, transport);
    const cliError = await (kind === "unary" ? query.listServices({}) : drain(query.streamQuery({ sql: "SELECT 1" }))).then(
      () => new Error("the call succeeded"),
      (e: unknown) => describeRpcError(e, address.display),
    );
    const tool = queryTools.find((t) => t.name === (kind === "unary" ? "list_services" : "stream_query"))!;
    const result = await callTool(tool, kind === "unary" ? {} : { sql: "SELECT 1" }, { transport, display: address.display }, signal);
    expect(result.isError).toBe(true);
    const colony = await connectColony(addr, token, limits);
    try {
      const method = colony.method(kind === "unary" ? "ListServices" : "StreamQuery")!;
      const err = await (kind === "unary" ? colony.unary(method, {}, signal) : drainIterator(colony.stream(method, { sql: "SELECT 1" }, signal))).then(
        () => new Error("the call succeeded"),
        (e: unknown) => e,
      );
      const f = await colony.failure(err);
      return { cli: cliError.message, mcp: (result.content as { text: string }[])[0]!.text, run: { code: f.code, message: f.message } };
    } finally {
      colony.close();
    }
  } finally {
    client.close();
  }
}

async function drain(it: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of it);
}

async function drainIterator(it: AsyncIterator<unknown>): Promise<void> {
  while (!(await it.next()).done);
}

/**
 * The three agree: the CLI and MCP print the same line; the script's CoralError has the code and
 * the same words (a colony's own message names the colony where the CLI adds the code).
 */
function expectAgreement(said: Said, code: string, message: RegExp, display: string): void {
  expect(said.cli).toMatch(message);
  expect(said.mcp).toBe(said.cli);
  expect(said.run.code).toBe(code);
  const suffix = ` (${code})`;
  const words = said.cli.endsWith(suffix) ? `${said.cli.slice(0, -suffix.length)} (colony ${display})` : said.cli;
  expect(said.run.message).toBe(words);
}

/** A server that answers every call with `handler`. */
async function misbehaving(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ addr: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A server below HTTP: `answer` writes whatever bytes it likes once a request's first bytes are in. */
async function raw(answer: (socket: Socket) => void): Promise<{ addr: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("data", () => answer(socket));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

const isStream = (req: IncomingMessage) => req.headers["content-type"] === "application/connect+proto";
const batch = envelope(toBinary(StreamQueryResponseSchema, create(StreamQueryResponseSchema, { rowCount: 1, valuesJson: "[[1]]" })));

describe("a real colony that wants a token", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token: TOKEN });
  }, 60_000);
  afterAll(async () => {
    await colony?.stop();
  });

  for (const kind of ["unary", "stream"] as const) {
    it(`without one: unauthenticated, saying how to give it (${kind})`, async () => {
      expectAgreement(await say(colony.addr, undefined, kind), "unauthenticated", /^colony at \S+ rejected the request: .+ — pass --token-file FILE or set CORAL_TOKEN$/, colony.addr);
    });

    it(`with a wrong one: the same (${kind})`, async () => {
      expectAgreement(await say(colony.addr, "wrong", kind), "unauthenticated", /^colony at \S+ rejected the request: .+ — pass --token-file FILE or set CORAL_TOKEN$/, colony.addr);
    });
  }
});

describe("a colony that fails", () => {
  for (const kind of ["unary", "stream"] as const) {
    it(`is down: unavailable, saying how to start one (${kind})`, async () => {
      const addr = await closedPort();
      expectAgreement(await say(addr, TOKEN, kind), "unavailable", /^cannot reach colony at 127\.0\.0\.1:\d+ \(connection refused\) — start one with: coral colony start$/, addr);
    });

    it(`dies in the middle of its answer: unavailable, retry (${kind})`, async () => {
      const s = await misbehaving((req, res) => {
        if (isStream(req)) {
          res.writeHead(200, { "content-type": "application/connect+proto" });
          res.write(batch);
        } else {
          res.writeHead(200, { "content-type": req.headers["content-type"], "content-length": 100 });
          res.write("{");
        }
        setTimeout(() => res.socket?.destroy(), 20);
      });
      try {
        expectAgreement(await say(s.addr, TOKEN, kind), "unavailable", /^colony at \S+ closed the connection .* — retry$/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`stays silent: deadline_exceeded once the client's time is up (${kind})`, async () => {
      const s = await misbehaving((req, res) => {
        // Headers for a stream, then nothing: the silence counts while a body is awaited too.
        if (isStream(req)) res.writeHead(200, { "content-type": "application/connect+proto" }).flushHeaders();
      });
      try {
        expectAgreement(await say(s.addr, TOKEN, kind, { answerTimeoutMs: 300 }), "deadline_exceeded", /^colony at \S+ timed out: no answer in 0\.3 s$/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`answers more than the client takes: resource_exhausted (${kind})`, async () => {
      const big = Buffer.alloc(2048, 0x20);
      const s = await misbehaving((req, res) => {
        if (isStream(req)) res.writeHead(200, { "content-type": "application/connect+proto" }).end(envelope(big));
        else res.writeHead(200, { "content-type": req.headers["content-type"] }).end(big);
      });
      try {
        expectAgreement(await say(s.addr, TOKEN, kind, { readMaxBytes: 1024 }), "resource_exhausted", /^the colony sent a message of \d+ bytes, over the 1024 coral accepts/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`answers with a garbage status line: llhttp's words (${kind})`, async () => {
      const s = await raw((socket) => socket.end("garbage\r\n\r\n"));
      try {
        expectAgreement(await say(s.addr, TOKEN, kind), "unknown", /^Parse Error: Expected HTTP\/, RTSP\/ or ICE\/ \(unknown\)$/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`floods headers: refused past 16 KiB (${kind})`, async () => {
      const s = await raw((socket) => {
        socket.write("HTTP/1.1 200 OK\r\n");
        for (let i = 0; i < 2000; i++) socket.write(`x-h${i}: ${"a".repeat(20)}\r\n`);
      });
      try {
        expectAgreement(await say(s.addr, TOKEN, kind), "unknown", /^Parse Error: Header overflow \(unknown\)$/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`drips its head a byte at a time: deadline_exceeded (${kind})`, async () => {
      const s = await raw((socket) => {
        const t = setInterval(() => socket.write("x"), 20);
        socket.once("close", () => clearInterval(t));
        socket.write("HTTP/1.1 200 OK\r\nx-slow: ");
      });
      try {
        expectAgreement(await say(s.addr, TOKEN, kind, { answerTimeoutMs: 300 }), "deadline_exceeded", /^colony at \S+ timed out: no answer in 0\.3 s$/, s.addr);
      } finally {
        await s.close();
      }
    });

    it(`is something else: unavailable, naming what answered (${kind})`, async () => {
      const s = await misbehaving((_req, res) => res.writeHead(404, { "content-type": "text/html" }).end("<h1>nope</h1>"));
      try {
        expectAgreement(await say(s.addr, TOKEN, kind), "unavailable", /^\S+ did not answer as a Coral colony \(HTTP 404\)/, s.addr);
      } finally {
        await s.close();
      }
    });
  }

  it("declares an answer larger than the client takes: refused unread (unary)", async () => {
    const s = await raw((socket) => socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2048\r\n\r\n"));
    try {
      expectAgreement(await say(s.addr, TOKEN, "unary", { readMaxBytes: 1024 }), "resource_exhausted", /^the colony sent a message of 2048 bytes, over the 1024 coral accepts/, s.addr);
    } finally {
      await s.close();
    }
  });

  it("drops each kept-alive connection as the next call goes out: every unary call still answered", async () => {
    // The race of every keep-alive client: a server closes an idle connection just as a request is
    // written on it. The colony's unary calls only read, so each is sent again, once, on a new one.
    const served = new WeakMap<object, number>();
    const s = await misbehaving((req, res) => {
      const n = served.get(req.socket) ?? 0;
      served.set(req.socket, n + 1);
      if (n > 0) req.socket.destroy();
      else res.writeHead(200, { "content-type": req.headers["content-type"] }).end(req.headers["content-type"] === "application/json" ? "{}" : "");
    });
    const address = resolveColony(s.addr);
    const client = new ColonyClient(address, TOKEN);
    const colony = await connectColony(s.addr, TOKEN);
    try {
      const query = createClient(QueryService, colonyTransport(client));
      const method = colony.method("ListServices")!;
      for (let i = 0; i < 3; i++) {
        expect(await query.listServices({})).toMatchObject({ services: [] });
        expect(await colony.unary(method, {}, new AbortController().signal)).toEqual({ services: [] });
      }
    } finally {
      client.close();
      colony.close();
      await s.close();
    }
  });

  it("every request carries the token, the user agent and Connect's version", async () => {
    const seen: IncomingMessage["headers"][] = [];
    const s = await misbehaving((req, res) => {
      seen.push(req.headers);
      res.writeHead(503).end();
    });
    try {
      await say(s.addr, TOKEN, "unary");
      await say(s.addr, TOKEN, "stream");
      expect(seen).toHaveLength(6);
      for (const h of seen) {
        expect(h.authorization).toBe(`Bearer ${TOKEN}`);
        expect(h["user-agent"]).toMatch(/^coral\/\d+\.\d+\.\d+/);
        expect(h["connect-protocol-version"]).toBe("1");
      }
    } finally {
      await s.close();
    }
  });
});
