import * as http from "node:http";
import type { SpanRecord } from "../ingest/writer.js";
import { DemoTraffic, demoServices } from "./demo.js";

// `coral demo load`: the demo shop as live OTLP/HTTP protobuf traffic, so people can watch a colony
// fill up and benchmarks can drive the receiver. Spans are encoded by hand (field numbers from
// opentelemetry/proto/{collector/trace,trace,resource,common}/v1 in proto/): the generated encoder is
// slower than the receiver it is meant to load. A test decodes this output with the generated schema.

const KIND: Record<SpanRecord["kind"], number> = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };
const STATUS: Record<SpanRecord["statusCode"], number> = { UNSET: 0, OK: 1, ERROR: 2 };

/** A growable protobuf writer; nested messages are written into a scratch writer and copied with their length. */
class ProtoWriter {
  buf = Buffer.allocUnsafe(1 << 16);
  pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.ensure(10);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  string(field: number, s: string): void {
    const len = Buffer.byteLength(s);
    this.tag(field, 2);
    this.varint(len);
    this.ensure(len);
    this.pos += this.buf.write(s, this.pos, "utf8");
  }

  hex(field: number, hex: string): void {
    this.tag(field, 2);
    this.varint(hex.length / 2);
    this.ensure(hex.length / 2);
    this.pos += this.buf.write(hex, this.pos, "hex");
  }

  fixed64(field: number, lo: number, hi: number): void {
    this.tag(field, 1);
    this.ensure(8);
    this.buf.writeUInt32LE(lo >>> 0, this.pos);
    this.buf.writeUInt32LE(hi >>> 0, this.pos + 4);
    this.pos += 8;
  }

  /** Writes a length-delimited sub-message built by `body`. Its length is not known up front, so reserve 3 bytes and shift if needed. */
  message(field: number, body: () => void): void {
    this.tag(field, 2);
    this.ensure(5);
    const lenAt = this.pos;
    this.pos += 3;
    body();
    const len = this.pos - lenAt - 3;
    const lenBytes = len < 0x80 ? 1 : len < 0x4000 ? 2 : len < 0x200000 ? 3 : len < 0x10000000 ? 4 : 5;
    if (lenBytes !== 3) {
      this.ensure(lenBytes - 3);
      this.buf.copy(this.buf, lenAt + lenBytes, lenAt + 3, this.pos);
      this.pos += lenBytes - 3;
    }
    let v = len;
    for (let i = 0; i < lenBytes; i++) {
      this.buf[lenAt + i] = (v & 0x7f) | (i < lenBytes - 1 ? 0x80 : 0);
      v >>>= 7;
    }
  }

  attribute(field: number, key: string, value: unknown): void {
    this.message(field, () => {
      this.string(1, key);
      this.message(2, () => {
        if (typeof value === "string") this.string(1, value);
        else if (typeof value === "boolean") {
          this.tag(2, 0);
          this.varint(value ? 1 : 0);
        } else if (typeof value === "number" && Number.isInteger(value) && value >= 0) {
          this.tag(3, 0);
          this.varint(value);
        } else if (typeof value === "number") {
          this.tag(4, 1);
          this.ensure(8);
          this.buf.writeDoubleLE(value, this.pos);
          this.pos += 8;
        } else this.string(1, JSON.stringify(value));
      });
    });
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export interface LoadResource {
  serviceName: string;
  namespace: string;
  region: string;
  instanceId: string;
}

/** ExportTraceServiceRequest bytes for spans grouped by resource. */
export function encodeTraces(groups: { resource: LoadResource; spans: SpanRecord[] }[]): Buffer {
  const w = new ProtoWriter();
  for (const { resource, spans } of groups) {
    w.message(1, () => {
      w.message(1, () => {
        w.attribute(1, "service.name", resource.serviceName);
        w.attribute(1, "service.namespace", resource.namespace);
        w.attribute(1, "cloud.region", resource.region);
        w.attribute(1, "service.instance.id", resource.instanceId);
      });
      w.message(2, () => {
        w.message(1, () => w.string(1, "coral-demo-load"));
        for (const s of spans) {
          w.message(2, () => {
            w.hex(1, s.traceId);
            w.hex(2, s.spanId);
            if (s.parentSpanId) w.hex(4, s.parentSpanId);
            w.string(5, s.name);
            w.tag(6, 0);
            w.varint(KIND[s.kind]);
            // ms → ns in two 32-bit words without losing precision to doubles above 2^53.
            const startNs = BigInt(Math.round(s.startTimeMs * 1e3)) * 1000n;
            const endNs = startNs + BigInt(Math.round(s.durationNs));
            w.fixed64(7, Number(startNs & 0xffffffffn), Number(startNs >> 32n));
            w.fixed64(8, Number(endNs & 0xffffffffn), Number(endNs >> 32n));
            const attrs = typeof s.attributes === "string" ? (JSON.parse(s.attributes) as Record<string, unknown>) : s.attributes;
            for (const k in attrs) if (k !== "service.instance.id") w.attribute(9, k, attrs[k]);
            if (s.httpStatusCode !== null && !("http.status_code" in attrs)) w.attribute(9, "http.status_code", s.httpStatusCode);
            if (s.statusCode !== "UNSET") w.message(15, () => {
              w.tag(3, 0);
              w.varint(STATUS[s.statusCode]);
            });
          });
        }
      });
    });
  }
  return Buffer.from(w.bytes());
}

export interface LoadOptions {
  /** Base URL of the OTLP/HTTP receiver, e.g. http://127.0.0.1:4318 (spans go to /v1/traces). */
  url: string;
  /** Spans per second; Infinity sends as fast as the colony acknowledges. */
  rate: number;
  /** Seconds to run; Infinity runs until `signal` aborts. */
  durationS: number;
  batch: number;
  seed: number;
  token?: string;
  /** Requests in flight at once. */
  concurrency: number;
  signal?: AbortSignal;
  /** Called about once a second with progress. */
  progress?: (p: LoadStats) => void;
}

export interface LoadStats {
  sent: number;
  rejected: number;
  retried: number;
  seconds: number;
}

/** A batch of about `size` spans from whole traces, grouped by resource (one instance per service per batch). */
function makeBatcher(seed: number) {
  const traffic = new DemoTraffic(seed);
  const services = new Map(demoServices().map((s) => [s.name, s]));
  let round = 0;
  let carry: SpanRecord[] = [];
  return (size: number, nowMs: number): { body: Buffer; spans: number } => {
    const spans = carry;
    carry = [];
    while (spans.length < size) {
      // Traces start a little in the past so that their spans have ended "now", as exported spans have.
      for (const s of traffic.trace(nowMs - 2_000)) {
        if (spans.length < size) spans.push(s);
        else carry.push(s);
      }
    }
    round++;
    const byService = new Map<string, SpanRecord[]>();
    for (const s of spans) {
      let list = byService.get(s.serviceName);
      if (!list) byService.set(s.serviceName, (list = []));
      list.push(s);
    }
    const groups = [...byService].map(([name, list]) => {
      const svc = services.get(name)!;
      return { resource: { serviceName: name, namespace: svc.namespace, region: svc.region, instanceId: `${name}-${round % svc.instances}` }, spans: list };
    });
    return { body: encodeTraces(groups), spans: spans.length };
  };
}

/**
 * Sends the demo shop's traffic to an OTLP/HTTP receiver at `rate` spans/s in batches of `batch`,
 * retrying 429/503 after their Retry-After. A batch counts as sent once acknowledged (200), and as
 * rejected when refused for good (4xx other than 429, or retries exhausted) or partially rejected.
 */
export async function runLoad(o: LoadOptions): Promise<LoadStats> {
  const url = new URL("/v1/traces", o.url.endsWith("/") ? o.url : `${o.url}/`);
  if (o.url.replace(/\/+$/, "").endsWith("/v1/traces")) url.pathname = new URL(o.url).pathname;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const next = makeBatcher(o.seed);
  const stats: LoadStats = { sent: 0, rejected: 0, retried: 0, seconds: 0 };
  const started = performance.now();
  const deadline = started + o.durationS * 1000;
  let generated = 0;
  let lastProgress = started;
  let failure: Error | undefined;

  const post = (body: Buffer) =>
    new Promise<{ status: number; retryAfterS: number; body: Buffer }>((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: "POST",
          agent,
          headers: {
            "content-type": "application/x-protobuf",
            "content-length": body.length,
            ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, retryAfterS: Number(res.headers["retry-after"] ?? 1) || 1, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  const worker = async () => {
    while (!failure && !o.signal?.aborted) {
      const now = performance.now();
      if (now >= deadline) return;
      // Pace: never get ahead of rate × elapsed time.
      if (Number.isFinite(o.rate)) {
        const due = ((generated + o.batch) / o.rate) * 1000 + started;
        if (due > now) {
          await sleep(Math.min(due - now, deadline - now), o.signal);
          continue;
        }
      }
      const { body, spans } = next(o.batch, Date.now());
      generated += spans;
      for (let attempt = 0; ; attempt++) {
        let r;
        try {
          r = await post(body);
        } catch (err) {
          failure = new Error(`cannot reach ${url.origin}: ${(err as Error).message}`);
          return;
        }
        if (r.status === 200) {
          // A non-empty body on success carries partial_success: count it as (some) rejected spans.
          const rejected = r.body.length > 0 ? rejectedSpans(r.body) : 0;
          stats.sent += spans - rejected;
          stats.rejected += rejected;
          break;
        }
        if ((r.status === 429 || r.status === 503) && attempt < 5 && !o.signal?.aborted) {
          stats.retried++;
          await sleep(r.retryAfterS * 1000, o.signal);
          continue;
        }
        if (r.status === 401) {
          failure = new Error(`the colony refused the token (401): pass --token or set CORAL_TOKEN`);
          return;
        }
        stats.rejected += spans;
        break;
      }
      const t = performance.now();
      if (o.progress && t - lastProgress >= 1000) {
        lastProgress = t;
        o.progress({ ...stats, seconds: (t - started) / 1000 });
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    agent.destroy();
  }
  stats.seconds = (performance.now() - started) / 1000;
  if (failure) throw Object.assign(failure, { stats });
  return stats;
}

/** ExportTraceServiceResponse.partial_success.rejected_spans (fields 1 → 1), 0 if absent. */
function rejectedSpans(body: Buffer): number {
  // Tiny by construction; a full decoder is not worth it here.
  if (body[0] !== 0x0a) return 0;
  let i = 2;
  while (i < body.length) {
    const tag = body[i++]!;
    if (tag === 0x08) {
      let v = 0;
      let mul = 1;
      for (;;) {
        const b = body[i++]!;
        v += (b & 0x7f) * mul;
        mul *= 128;
        if (!(b & 0x80)) return v;
      }
    }
    if ((tag & 7) === 2) i += body[i]! + 1;
    else return 0;
  }
  return 0;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
