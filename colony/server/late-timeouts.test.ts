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
import { checkingInterval, listen, type ConnectionLimits } from "./listen.js";
import { LoopWatch } from "./loop-watch.js";

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

/** A header byte every this many ms, one connection each: from faster than Node's check to its own period. */
const DRIPS_MS = [2, 3, 5, 8, 13, 21, 34, 55, 89, 100];
const DRIP_ROUNDS = 8;

/**
 * The longest this process's loop may have been held up between now and the returned stop: a timer
 * every 5 ms, and how far behind its schedule it ran, plus the 5 ms (a hold-up may begin just
 * before a tick is due). Whether a round of the test ran on a healthy loop.
 */
function longestHoldUp(): () => number {
  const EVERY_MS = 5;
  let max = 0;
  let due = performance.now() + EVERY_MS;
  const timer = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - due);
    due = now + EVERY_MS;
  }, EVERY_MS);
  return () => {
    clearInterval(timer);
    return Math.max(max, performance.now() - due) + EVERY_MS;
  };
}

/**
 * A slowloris from this process: the request line, then one header byte every `everyMs` forever.
 * Dripping from the server's own loop puts a byte in the very turn of many judgements (a drip
 * timer due with Node's check), the case that used to be forgiven. Resolves with the milliseconds
 * from connecting to being closed, and the answer's first line.
 */
async function dripUntilCut(port: number, everyMs: number): Promise<{ ms: number; answer: string }> {
  const t0 = performance.now();
  const s = net.connect({ host: "127.0.0.1", port });
  let text = "";
  s.setEncoding("latin1").on("data", (d: string) => (text += d));
  s.on("error", () => {});
  s.write(`${LIST_REQUEST[0]!}x-drip: `);
  const drip = setInterval(() => s.writable && s.write("a"), everyMs);
  await once(s, "close");
  clearInterval(drip);
  return { ms: performance.now() - t0, answer: text.split("\r\n")[0] || "closed" };
}

describe("a loop that was not held up forgives nobody", () => {
  it("slowloris connections dripping a header byte every 2 to 100 ms, many rounds: each cut at its first period's check, never given a second period", async () => {
    const parts: IngestPart[] = [];
    const pipeline = { submit: async (p: IngestPart) => void parts.push(p) } as unknown as IngestPipeline;
    const server = await listen({ host: "127.0.0.1", port: 0, routes, limits: LIMITS });
    const rx = await listenOtlp({ host: "127.0.0.1", port: 0, pipeline, maxBodyBytes: 2 ** 20, limits: LIMITS });
    // A round in which this process itself was held up for a checking interval (a loaded machine)
    // may forgive, rightly: it does not count, and is run again.
    const holdUpFromMs = checkingInterval(LIMITS);
    try {
      const cuts: { ms: number; answer: string; port: string }[] = [];
      const heldUp: number[] = [];
      for (let healthy = 0; healthy < DRIP_ROUNDS; ) {
        if (heldUp.length >= 2 * DRIP_ROUNDS) throw new Error(`this process was held up in ${heldUp.length} rounds (by ${heldUp.map((ms) => ms.toFixed(0)).join(", ")} ms): no healthy loop to test on`);
        const holdUp = longestHoldUp();
        const round = await Promise.all([
          ...DRIPS_MS.map((ms) => dripUntilCut(server.address.port, ms).then((c) => ({ ...c, port: `query, every ${ms} ms` }))),
          ...DRIPS_MS.map((ms) => dripUntilCut(rx.address.port, ms).then((c) => ({ ...c, port: `OTLP, every ${ms} ms` }))),
        ]);
        const heldUpMs = holdUp();
        if (heldUpMs >= holdUpFromMs) heldUp.push(heldUpMs);
        else (healthy++, cuts.push(...round));
      }
      // Node's check runs every quarter period or so, so an unforgiven slowloris is cut before the
      // headers timeout has run out twice; a forgiven one is given a whole period more after its
      // judgement, which comes after one period at least.
      const latest = Math.max(...cuts.map((c) => c.ms));
      console.log(`slowloris: ${cuts.length} cut, the latest after ${latest.toFixed(0)} ms (headers timeout ${LIMITS.headersTimeoutMs} ms, checked every ${holdUpFromMs} ms); ${heldUp.length} rounds run again after a hold-up of this process`);
      const forgiven = cuts.filter((c) => c.ms >= 2 * LIMITS.headersTimeoutMs);
      expect(forgiven).toEqual([]);
      expect(new Set(cuts.map((c) => c.answer))).toEqual(new Set(["HTTP/1.1 408 Request Timeout", "HTTP/1.1 503 Service Unavailable"]));
    } finally {
      await Promise.all([server.close(), rx.close()]);
    }
  });
});

describe("LoopWatch", () => {
  it("sees a hold-up of 1.25 thresholds and more in the first loop turn after it, and forgets it at its next tick on time", async () => {
    const watch = new LoopWatch(100);
    const turn = () => new Promise((r) => setImmediate(r));
    try {
      await new Promise((r) => setTimeout(r, 60));
      expect(watch.heldUp).toBe(false);
      await turn();
      const until = performance.now() + 150;
      while (performance.now() < until) {
        // held up
      }
      await turn();
      expect(watch.heldUp).toBe(true);
      // Its next tick is a quarter threshold later; two, to be past it whatever the phase.
      await new Promise((r) => setTimeout(r, 50));
      expect(watch.heldUp).toBe(false);
    } finally {
      watch.stop();
    }
  });
});
