// A colony whose event loop is held up (a long collection, a paused or overloaded machine) must not
// cut the clients that sent their requests meanwhile: after the hold-up Node's timeout timers run
// before the loop reads their bytes. The hold-up here is a busy wait in this process; the client is
// another process, so it sends on time while the server cannot look.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectRouter } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import type { IngestPart, IngestPipeline } from "../ingest/otlp/pipeline.js";
import { listenOtlp } from "../ingest/otlp/receiver.js";
import { listen, type ConnectionLimits } from "./listen.js";

const LIMITS: ConnectionLimits = {
  firstBytesTimeoutMs: 300,
  headersTimeoutMs: 400,
  requestTimeoutMs: 800,
  idleTimeoutMs: 5_000,
  stallTimeoutMs: 5_000,
  maxConnections: 64,
};
/** Longer than every timeout above. */
const HOLD_UP_MS = 1_500;

function routes(router: ConnectRouter): void {
  router.service(QueryService, { listServices: () => ({ services: [{ name: "svc", namespace: "ns", instanceCount: 1 }] }) });
}

const LIST = "/coral.colony.v1.QueryService/ListServices";
const LIST_REQUEST = [`POST ${LIST} HTTP/1.1\r\nhost: x\r\n`, `content-type: application/json\r\ncontent-length: 2\r\n\r\n{}`];
const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/** A SETTINGS frame with no settings: length 0, type 4, no flags, stream 0. */
const H2_EMPTY_SETTINGS = "\0\0\0\x04\0\0\0\0\0";
/** An empty ExportMetricsServiceRequest. */
const OTLP_REQUEST = [`POST /v1/metrics HTTP/1.1\r\nhost: x\r\n`, `content-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n`];

/**
 * A client process: connects, sends `first` (may be empty), and `rest` when told; reports the first
 * line the server answers, or "closed" if the server closes without one.
 */
const CLIENT = `
const net = require("node:net");
const [port, first, rest, openAfterMs] = JSON.parse(process.argv[1]);
let text = "";
const done = (line) => { process.send(line, () => process.exit(0)); };
const s = net.connect({ host: "127.0.0.1", port }, () => {
  if (first) s.write(first);
  process.send("connected");
});
s.setEncoding("latin1");
s.on("data", (d) => { text += d; const i = text.indexOf("\\r\\n"); if (i >= 0 && !openAfterMs) done(text.slice(0, i)); });
s.on("error", () => {});
s.on("close", () => done(text.split("\\r\\n")[0] || "closed"));
process.on("message", () => {
  s.write(Buffer.from(rest, "latin1"));
  if (openAfterMs) setTimeout(() => done(s.destroyed ? "closed" : "open"), openAfterMs);
});
`;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill();
});

/** The client sends `rest` while this process's event loop is held up; resolves with its answer's first line. */
async function sentDuringHoldUp(port: number, [first, rest]: string[], openAfterMs = 0): Promise<string> {
  const child = spawn(process.execPath, ["-e", CLIENT, JSON.stringify([port, first, rest, openAfterMs])], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.push(child);
  const messages: unknown[] = [];
  child.on("message", (m) => messages.push(m));
  const exited = once(child, "close").then(([code]) => {
    throw new Error(`the client process exited (${code}) before it answered`);
  });
  exited.catch(() => {});
  await Promise.race([once(child, "message"), exited]);
  // Long enough for the server to accept the connection and read `first`.
  await new Promise((r) => setTimeout(r, 100));
  child.send("go");
  // Held up in the check phase, as after a long collection: the loop's next turn runs the timers
  // that expired meanwhile, then reads the sockets (from within a timer, Node would still use the
  // time it read before the hold-up and leave those timers to the turn after the reads).
  await new Promise((r) => setImmediate(r));
  const until = performance.now() + HOLD_UP_MS;
  while (performance.now() < until) {
    // held up: nothing of this process's loop runs
  }
  while (messages.length < 2) await Promise.race([once(child, "message"), exited]);
  return String(messages[1]);
}

/** A client that sends `first` and then nothing: what it is answered. */
async function silentAfter(port: number, first: string): Promise<string> {
  const s = net.connect({ host: "127.0.0.1", port });
  let text = "";
  s.setEncoding("latin1").on("data", (d: string) => (text += d));
  s.on("error", () => {});
  s.write(first);
  await once(s, "close");
  return text.split("\r\n")[0] || "closed";
}

describe("a held-up event loop does not cut clients that were on time", () => {
  it("query port: a request sent while the loop was held up is answered (first bytes, the headers' end, HTTP/2's SETTINGS)", async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes, limits: LIMITS });
    try {
      const port = server.address.port;
      // All of it during the hold-up: the first-bytes deadline.
      expect(await sentDuringHoldUp(port, ["", LIST_REQUEST.join("")])).toBe("HTTP/1.1 200 OK");
      // Half the headers before, the rest during: Node's headers timeout.
      expect(await sentDuringHoldUp(port, LIST_REQUEST)).toBe("HTTP/1.1 200 OK");
      // HTTP/2: the preface before, the client's SETTINGS during (the server's own SETTINGS timeout).
      expect(await sentDuringHoldUp(port, [H2_PREFACE, H2_EMPTY_SETTINGS], HOLD_UP_MS + 1_000)).toBe("open");
      // A client that really is late is still cut; one forgiven (its bytes were waiting) that then
      // never ends its headers too, by the deadline it was given.
      expect(await silentAfter(port, LIST_REQUEST[0]!)).toBe("HTTP/1.1 408 Request Timeout");
      expect(await sentDuringHoldUp(port, [LIST_REQUEST[0]!, "x-more: 1\r\n"])).toBe("HTTP/1.1 408 Request Timeout");
      expect(await silentAfter(port, "")).toBe("closed");
    } finally {
      await server.close();
    }
  });

  it("OTLP port: the export sent during the hold-up is stored; a late client is answered 503 with Retry-After (exporters retry it), not 408", async () => {
    const parts: IngestPart[] = [];
    const pipeline = { submit: async (p: IngestPart) => void parts.push(p) } as unknown as IngestPipeline;
    const rx = await listenOtlp({ host: "127.0.0.1", port: 0, pipeline, maxBodyBytes: 2 ** 20, limits: LIMITS });
    try {
      const port = rx.address.port;
      expect(await sentDuringHoldUp(port, OTLP_REQUEST)).toBe("HTTP/1.1 200 OK");
      expect(await sentDuringHoldUp(port, [OTLP_REQUEST[0]!, "x-more: 1\r\n"])).toBe("HTTP/1.1 503 Service Unavailable");
      const s = net.connect({ host: "127.0.0.1", port });
      let text = "";
      s.setEncoding("latin1").on("data", (d: string) => (text += d));
      s.on("error", () => {});
      s.write(OTLP_REQUEST[0]!);
      await once(s, "close");
      expect(text).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
      expect(text).toMatch(/\r\nRetry-After: 5\r\n/i);
    } finally {
      await rx.close();
    }
  });
});
