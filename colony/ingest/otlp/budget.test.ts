// The OTLP receiver's byte budget for all requests together (maxInflightBytes), in process and
// small; 40 clients × 15 MiB against a real colony are in test/hostile/budget.test.ts.
import { once } from "node:events";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import type { IngestPart, IngestPipeline } from "./pipeline.js";
import { UnavailableError } from "./pipeline.js";
import { listenOtlp, type OtlpReceiver, type OtlpReceiverOptions } from "./receiver.js";
import { varint } from "../../../test/helpers/protobuf-wire.js";

const KIB = 1024;
const BUDGET = 1024 * KIB;

/** A pipeline that stores nothing; while `hold` is set, commits wait for it. */
function stubPipeline() {
  const parts: IngestPart[] = [];
  const state: { hold?: Promise<void>; failWith?: Error } = {};
  return {
    parts,
    state,
    pipeline: {
      submit: async (p: IngestPart) => {
        await state.hold;
        if (state.failWith) throw state.failWith;
        parts.push(p);
      },
    } as unknown as IngestPipeline,
  };
}

let receiver: OtlpReceiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

async function start(stub: ReturnType<typeof stubPipeline>, o: Partial<OtlpReceiverOptions> = {}) {
  receiver = await listenOtlp({ host: "127.0.0.1", port: 0, pipeline: stub.pipeline, maxBodyBytes: 4 * BUDGET, maxInflightBytes: BUDGET, ...o });
  return receiver;
}


/** A valid, empty ExportMetricsServiceRequest of `bytes`: one unknown field, which decoders skip. */
function padding(bytes: number): Buffer {
  let n = bytes - 2;
  while (1 + varint(n).length + n > bytes) n--;
  return Buffer.concat([Buffer.from([(15 << 3) | 2]), varint(n), Buffer.alloc(n, 0x61)]);
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

const head = (length: number | "chunked", extra = "") =>
  `POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n${length === "chunked" ? "transfer-encoding: chunked" : `content-length: ${length}`}\r\n${extra}\r\n`;

/** Everything the socket receives from now on, as text, and a way to wait for a pattern in it. */
function listenTo(socket: net.Socket) {
  let text = "";
  const waiters: (() => void)[] = [];
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => {
    text += d;
    for (const w of waiters.splice(0)) w();
  });
  socket.on("error", () => {});
  return {
    get text() {
      return text;
    },
    async waitFor(re: RegExp, ms = 5_000): Promise<string> {
      const deadline = Date.now() + ms;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(text.slice(0, 300))}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return text;
    },
  };
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function post(url: string, body: Buffer, headers: Record<string, string> = {}) {
  const r = await fetch(url, { method: "POST", body: new Uint8Array(body), headers: { "content-type": "application/x-protobuf", ...headers } });
  return { status: r.status, retryAfter: r.headers.get("retry-after"), body: Buffer.from(await r.arrayBuffer()) };
}

describe("OTLP receiver: one byte budget for every request in flight", () => {
  it("a declared length that does not fit: 429 with Retry-After before the body is sent; the connection stays usable", async () => {
    const rx = await start(stubPipeline());
    const a = await connect(rx.address.port);
    const aBody = padding(600 * KIB);
    a.write(Buffer.concat([Buffer.from(head(aBody.length)), aBody.subarray(0, 100)]));
    await until(() => rx.inflightBytes === aBody.length);

    const b = await connect(rx.address.port);
    const bAnswer = listenTo(b);
    b.write(head(600 * KIB));
    // Nothing of B's body was sent, yet it is answered.
    const text = await bAnswer.waitFor(/\r\n\r\n[\s\S]*the colony is holding/);
    expect(text).toMatch(/^HTTP\/1\.1 429 /);
    expect(text).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(text).not.toMatch(/connection: close/i);
    expect(rx.inflightBytes).toBe(aBody.length);
    // The client may still send what it promised: dropped, not held, and the connection survives.
    b.write(padding(600 * KIB));
    b.write(Buffer.concat([Buffer.from(head(10)), padding(10)]));
    await bAnswer.waitFor(/HTTP\/1\.1 429[\s\S]*HTTP\/1\.1 200 /);

    const aAnswer = listenTo(a);
    a.write(aBody.subarray(100));
    await aAnswer.waitFor(/^HTTP\/1\.1 200 /);
    await until(() => rx.inflightBytes === 0);
    a.destroy();
    b.destroy();
  });

  it("a chunked body is counted as it arrives: 429 once it passes the budget, while the client still sends", async () => {
    const rx = await start(stubPipeline());
    const a = await connect(rx.address.port);
    a.write(head(600 * KIB));
    await until(() => rx.inflightBytes === 600 * KIB);

    const b = await connect(rx.address.port);
    const answer = listenTo(b);
    b.write(head("chunked"));
    let sent = 0;
    const chunk = Buffer.alloc(64 * KIB, 0x61);
    while (!/HTTP\/1\.1/.test(answer.text) && sent < 4 * BUDGET) {
      b.write(`${chunk.length.toString(16)}\r\n`);
      b.write(chunk);
      b.write("\r\n");
      sent += chunk.length;
      await new Promise((r) => setTimeout(r, 5));
    }
    await answer.waitFor(/^HTTP\/1\.1 429 [\s\S]*retry-after: 1/i);
    // Refused within a chunk or two of the ~424 KiB left, not after the whole body.
    expect(sent).toBeLessThan(BUDGET);
    await until(() => rx.inflightBytes === 600 * KIB);
    a.destroy();
    b.destroy();
    await until(() => rx.inflightBytes === 0);
  });

  it("one request larger than the whole budget still gets through an idle receiver", async () => {
    const stub = stubPipeline();
    const rx = await start(stub);
    const url = `http://127.0.0.1:${rx.address.port}/v1/metrics`;
    expect((await post(url, padding(3 * BUDGET))).status).toBe(200);
    expect(rx.inflightBytes).toBe(0);
  });

  it("gzip: the inflated body is counted too, until the commit", async () => {
    const stub = stubPipeline();
    let release!: () => void;
    stub.state.hold = new Promise((r) => (release = r));
    const rx = await start(stub);
    const url = `http://127.0.0.1:${rx.address.port}/v1/metrics`;
    const raw = padding(512 * KIB);
    const zipped = gzipSync(raw);
    const answer = post(url, zipped, { "content-encoding": "gzip" });
    await until(() => rx.inflightBytes === zipped.length + raw.length);
    // A request that fits what is left of the budget on the wire, but not beside the inflated one.
    expect((await post(url, padding(600 * KIB))).status).toBe(429);
    release();
    expect((await answer).status).toBe(200);
    await until(() => rx.inflightBytes === 0);
  });

  describe("the budget comes back on every path", () => {
    const cases: [string, (url: string, stub: ReturnType<typeof stubPipeline>, port: number) => Promise<unknown>][] = [
      ["200", (url) => post(url, padding(100 * KIB)).then((r) => expect(r.status).toBe(200))],
      ["400 malformed", (url) => post(url, Buffer.alloc(100 * KIB, 0xff)).then((r) => expect(r.status).toBe(400))],
      ["400 corrupt gzip", (url) => post(url, Buffer.alloc(100 * KIB, 7), { "content-encoding": "gzip" }).then((r) => expect(r.status).toBe(400))],
      ["413 inflated past the body limit", (url) => post(url, gzipSync(Buffer.alloc(5 * BUDGET)), { "content-encoding": "gzip" }).then((r) => expect(r.status).toBe(413))],
      [
        "503 from the pipeline",
        (url, stub) => {
          stub.state.failWith = new UnavailableError("shutting down");
          return post(url, padding(100 * KIB)).then((r) => expect(r.status).toBe(503));
        },
      ],
      [
        "client gone mid-body",
        async (_url, _stub, port) => {
          const s = await connect(port);
          s.write(head(600 * KIB) + "x".repeat(1000));
          await until(() => receiver!.inflightBytes === 600 * KIB);
          s.destroy();
        },
      ],
      [
        "client gone while its request waits for the commit",
        async (url, stub, port) => {
          let release!: () => void;
          stub.state.hold = new Promise((r) => (release = r));
          const s = await connect(port);
          const body = padding(100 * KIB);
          s.write(head(body.length));
          s.write(body);
          await until(() => receiver!.inflightBytes === body.length);
          s.destroy();
          await new Promise((r) => setTimeout(r, 50));
          // Still held: its rows are in memory until the commit ends, client or no client.
          expect(receiver!.inflightBytes).toBe(body.length);
          release();
          void url;
        },
      ],
    ];
    for (const [name, run] of cases) {
      it(name, async () => {
        const stub = stubPipeline();
        const rx = await start(stub);
        await run(`http://127.0.0.1:${rx.address.port}/v1/metrics`, stub, rx.address.port);
        await until(() => rx.inflightBytes === 0);
      });
    }

    it("request timeout mid-body", async () => {
      const rx = await start(stubPipeline(), { limits: { requestTimeoutMs: 300, headersTimeoutMs: 300 } });
      const s = await connect(rx.address.port);
      const closed = once(s, "close");
      s.on("error", () => {});
      s.resume();
      s.write(head(600 * KIB) + "x".repeat(1000));
      await until(() => rx.inflightBytes === 600 * KIB);
      await closed;
      await until(() => rx.inflightBytes === 0);
    });
  });
});
