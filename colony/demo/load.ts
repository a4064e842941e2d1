import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as http from "node:http";
import type { AttributeRows, SpanRecord } from "../ingest/records.js";
import { DEMO_RESOURCE_FIELDS, DemoTraffic, demoServices } from "./demo.js";
import type { IncidentPlan, IncidentSpec } from "./incidents.js";
import { ProtoWriter } from "./proto-writer.js";

// `coral demo load`: the demo shop as live OTLP/HTTP protobuf traffic, so people can watch a colony
// fill up and benchmarks can drive the receiver. Spans are encoded with our ProtoWriter (field
// numbers from opentelemetry/proto/{collector/trace,trace,resource,common}/v1 in proto/): a load
// generator has to cost less than what it loads. A test decodes this output with the generated schema.

const KIND: Record<SpanRecord["kind"], number> = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };
const STATUS: Record<SpanRecord["statusCode"], number> = { UNSET: 0, OK: 1, ERROR: 2 };

/** An attribute (KeyValue{key, value: AnyValue}) as field `field` of the enclosing message. */
function attribute(w: ProtoWriter, field: number, key: string, value: unknown): void {
  w.begin(field).string(1, key).begin(2);
  if (typeof value === "string") w.string(1, value);
  else if (typeof value === "boolean") w.bool(2, value);
  else if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) w.uint(3, value);
  else if (typeof value === "number") w.double(4, value);
  else w.string(1, JSON.stringify(value));
  w.end().end();
}

export interface LoadResource {
  serviceName: string;
  namespace: string;
  region: string;
  instanceId: string;
  /** More resource attributes (a pod's k8s.pod.name and service.version), as `[key, value, …]`. */
  attributes?: AttributeRows;
}

/** ExportTraceServiceRequest bytes for spans grouped by resource. */
export function encodeTraces(groups: { resource: LoadResource; spans: SpanRecord[] }[]): Buffer {
  let spanCount = 0;
  for (const g of groups) spanCount += g.spans.length;
  const w = new ProtoWriter(1024 + 384 * spanCount);
  for (const { resource, spans } of groups) {
    w.begin(1); // ResourceSpans
    w.begin(1); // Resource
    attribute(w, 1, "service.name", resource.serviceName);
    attribute(w, 1, "service.namespace", resource.namespace);
    attribute(w, 1, "cloud.region", resource.region);
    attribute(w, 1, "service.instance.id", resource.instanceId);
    const more = resource.attributes ?? [];
    for (let i = 0; i < more.length; i += 2) attribute(w, 1, more[i]!, more[i + 1]!);
    w.end();
    w.begin(2); // ScopeSpans
    w.begin(1).string(1, "coral-demo-load").end();
    for (const s of spans) {
      w.begin(2); // Span
      w.hex(1, s.traceId).hex(2, s.spanId);
      if (s.parentSpanId) w.hex(4, s.parentSpanId);
      w.string(5, s.name).uint(6, KIND[s.kind]);
      const startUs = Math.round(s.startTimeMs * 1e3);
      w.fixed64Ns(7, startUs, 0).fixed64Ns(8, startUs, Math.round(s.durationNs));
      const attrs = typeof s.attributes === "string" ? (JSON.parse(s.attributes) as Record<string, unknown>) : s.attributes;
      for (const k in attrs) if (k !== "service.instance.id") attribute(w, 9, k, attrs[k]);
      if (s.httpStatusCode !== null && !("http.status_code" in attrs)) attribute(w, 9, "http.status_code", s.httpStatusCode);
      if (s.statusCode !== "UNSET") w.begin(15).uint(3, STATUS[s.statusCode]).end();
      w.end();
    }
    w.end().end();
  }
  return w.finish();
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
  /** Stage an incident of this kind on every request while the load runs. */
  incident?: IncidentSpec;
  /** Told the staged incident before the first batch. */
  onIncident?: (plan: IncidentPlan) => void;
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

/** A batch of exactly `size` spans (a trace that does not fit goes on in the next batch), grouped by resource (one instance per service per batch). */
function makeBatcher(seed: number, incident?: IncidentSpec) {
  const traffic = new DemoTraffic(seed, incident);
  const services = new Map(demoServices().map((s) => [s.name, s]));
  let round = 0;
  let carry: SpanRecord[] = [];
  const batch = (size: number, nowMs: number): { body: Buffer; spans: number } => {
    const spans = carry.slice(0, size);
    carry = carry.slice(size);
    while (spans.length < size) {
      // Traces start a little in the past so that their spans have ended "now", as exported spans have.
      for (const s of traffic.trace(nowMs - 2_000)) {
        if (spans.length < size) spans.push(s);
        else carry.push(s);
      }
    }
    round++;
    // One resource per pod that served spans of the batch, as the seeded demo stores it (demo.ts):
    // its rows are shared by the pod's spans, so they identify it.
    const byResource = new Map<AttributeRows | string, { name: string; rows: AttributeRows; spans: SpanRecord[] }>();
    for (const s of spans) {
      const id = s.resourceRows ?? s.serviceName;
      let group = byResource.get(id);
      if (!group) byResource.set(id, (group = { name: s.serviceName, rows: s.resourceRows ?? [], spans: [] }));
      group.spans.push(s);
    }
    const groups = [...byResource.values()].map(({ name, rows, spans: list }) => {
      const svc = services.get(name)!;
      const fields = new Map<string, string>();
      const attributes: string[] = [];
      for (let i = 0; i < rows.length; i += 2) {
        if ((DEMO_RESOURCE_FIELDS as readonly string[]).includes(rows[i]!)) fields.set(rows[i]!, rows[i + 1]!);
        else attributes.push(rows[i]!, rows[i + 1]!);
      }
      const resource: LoadResource = {
        serviceName: name,
        namespace: fields.get("service.namespace") ?? svc.namespace,
        region: fields.get("cloud.region") ?? svc.region,
        instanceId: fields.get("service.instance.id") ?? `${name}-${round % svc.instances}`,
        ...(attributes.length ? { attributes } : {}),
      };
      return { resource, spans: list };
    });
    return { body: encodeTraces(groups), spans: spans.length };
  };
  return Object.assign(batch, { incident: traffic.incident });
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
  const next = makeBatcher(o.seed, o.incident);
  if (o.incident) o.onIncident?.(next.incident!);
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
      // Pace: a batch leaves when the schedule (rate × elapsed time) reaches its first span, and the
      // last one carries what is left of rate × duration, so a run that asks for fewer spans than
      // one batch still sends them.
      let size = o.batch;
      if (Number.isFinite(o.rate)) {
        const remaining = Math.round(o.rate * o.durationS) - generated;
        if (remaining <= 0) {
          await sleep(deadline - now, o.signal); // the run lasts --duration, as asked
          return;
        }
        size = Math.min(size, remaining);
        const due = (generated / o.rate) * 1000 + started;
        if (due > now) {
          await sleep(Math.min(due - now, deadline - now), o.signal);
          continue;
        }
      }
      const { body, spans } = next(size, Date.now());
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

/** ExportTraceServiceResponse.partial_success.rejected_spans (fields 1 → 1), 0 if absent or unreadable. */
function rejectedSpans(body: Buffer): number {
  try {
    const r = new BinaryReader(body);
    while (r.pos < r.len) {
      const [field, wireType] = r.tag();
      if (field !== 1 || wireType !== WireType.LengthDelimited) {
        r.skip(wireType, field);
        continue;
      }
      const p = new BinaryReader(r.bytes());
      while (p.pos < p.len) {
        const [f, wt] = p.tag();
        if (f === 1 && wt === WireType.Varint) return Number(p.int64());
        p.skip(wt, f);
      }
    }
  } catch {
    // A garbled response body says nothing about rejected spans; the 200 stands.
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
