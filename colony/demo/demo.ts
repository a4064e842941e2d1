import type { WriteStore } from "../store/engine.js";
import { toAttributeRows, type AttributeRows, type HostSample, type ResourceRecord, type SpanRecord } from "../ingest/records.js";
import { prng } from "./prng.js";
import { EXTRA_ROUTES, planIncident, Staging, type IncidentEffect, type IncidentKind, type IncidentPlan, type IncidentSpec } from "./incidents.js";

/**
 * A small shop, generated deterministically: the same seed and `nowMs` give the same rows, so docs,
 * examples and tests can quote numbers. Everything is written through the ingestion Writer, so the
 * demo exercises exactly the path OTLP data takes.
 *
 * Shape of the traffic (per minute, before a gentle daily swing):
 *   frontend GET /            → inventory GET /stock/:sku
 *   frontend GET /orders/:id  → orders GET /orders/:id → inventory GET /stock/:sku
 *   frontend POST /checkout   → auth POST /token, orders POST /orders → inventory, payments POST /charge
 *   frontend POST /refunds    → payments POST /refund
 *   legacy-api (batch clients) GET /v1/report, POST /v1/sync, each with a slow database call
 * payments has a heavy tail (p99 ≈ 0.9 s) and a short incident of gateway errors in the last hour;
 * legacy-api is slow (p99 > 1.5 s) and fails a few percent of the time.
 */

interface ServiceSpec {
  namespace: string;
  region: string;
  instances: number;
  /** Fraction of requests failing with a 5xx on their own (children's failures propagate too). */
  errorRate: number;
  /** Baseline CPU % and memory % of its hosts. */
  cpu: number;
  memory: number;
  memoryTotalBytes: number;
  /** The release its pods run (service.version) and their ReplicaSet's hash (in k8s.pod.name). */
  version: string;
  replicaSet: string;
}

const SERVICES: Record<string, ServiceSpec> = {
  frontend: { namespace: "web", region: "us-east-1", instances: 4, errorRate: 0.001, cpu: 35, memory: 45, memoryTotalBytes: 4 * 2 ** 30, version: "3.12.0", replicaSet: "5b7d8c9f4" },
  auth: { namespace: "platform", region: "us-east-1", instances: 2, errorRate: 0.0005, cpu: 20, memory: 30, memoryTotalBytes: 2 * 2 ** 30, version: "1.8.4", replicaSet: "6c9f5d7b8" },
  orders: { namespace: "shop", region: "us-east-1", instances: 3, errorRate: 0.002, cpu: 40, memory: 55, memoryTotalBytes: 8 * 2 ** 30, version: "2.3.1", replicaSet: "7f6b9d4c5" },
  payments: { namespace: "shop", region: "us-east-1", instances: 3, errorRate: 0.004, cpu: 45, memory: 60, memoryTotalBytes: 8 * 2 ** 30, version: "2.5.1", replicaSet: "5d9f7b8c6" },
  inventory: { namespace: "shop", region: "us-west-2", instances: 2, errorRate: 0.001, cpu: 25, memory: 40, memoryTotalBytes: 4 * 2 ** 30, version: "1.4.2", replicaSet: "8b5c7f9d6" },
  "legacy-api": { namespace: "legacy", region: "eu-west-1", instances: 2, errorRate: 0.03, cpu: 65, memory: 70, memoryTotalBytes: 16 * 2 ** 30, version: "0.9.7", replicaSet: "9d4f6b7c8" },
};

/** A route's own work (excluding downstream calls) is lognormal: `median` ms, and ≈ `p99` ms at the 99th percentile. */
interface Route {
  service: string;
  method: "GET" | "POST";
  path: string;
  median: number;
  p99: number;
  calls?: Route[];
  /** An INTERNAL child span doing the route's work (e.g. a database call). */
  internal?: string;
}

const stock: Route = { service: "inventory", method: "GET", path: "/stock/:sku", median: 18, p99: 70 };
const charge: Route = { service: "payments", method: "POST", path: "/charge", median: 120, p99: 880 };
const refund: Route = { service: "payments", method: "POST", path: "/refund", median: 90, p99: 600 };
const token: Route = { service: "auth", method: "POST", path: "/token", median: 8, p99: 40 };

/** Trace shapes and how many start per minute on average. */
const TRAFFIC: { rate: number; root: Route }[] = [
  { rate: 60, root: { service: "frontend", method: "GET", path: "/", median: 12, p99: 60, calls: [stock] } },
  {
    rate: 100,
    root: {
      service: "frontend",
      method: "GET",
      path: "/orders/:id",
      median: 10,
      p99: 50,
      calls: [{ service: "orders", method: "GET", path: "/orders/:id", median: 35, p99: 220, calls: [stock] }],
    },
  },
  {
    rate: 12,
    root: {
      service: "frontend",
      method: "POST",
      path: "/checkout",
      median: 15,
      p99: 80,
      calls: [token, { service: "orders", method: "POST", path: "/orders", median: 40, p99: 180, calls: [stock, charge] }],
    },
  },
  { rate: 2, root: { service: "frontend", method: "POST", path: "/refunds", median: 12, p99: 60, calls: [token, refund] } },
  { rate: 15, root: { service: "legacy-api", method: "GET", path: "/v1/report", median: 320, p99: 2400, internal: "SELECT report_rows" } },
  { rate: 10, root: { service: "legacy-api", method: "POST", path: "/v1/sync", median: 250, p99: 1800, internal: "UPDATE sync_state" } },
];

const MINUTE_MS = 60_000;
/**
 * Minutes of traffic per write (~30k spans, ~225k attribute rows): fewer, larger transactions took
 * ~30% less of DuckDB's CPU than 10-minute ones; 60 minutes were no cheaper than 30.
 */
const BATCH_MINUTES = 30;
const Z99 = 2.3263478740408408;

// Tests replay their randomness with the demo's generator.
export { prng };

const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

class Gen {
  constructor(readonly random: () => number) {}

  normal(): number {
    const u = 1 - this.random();
    const v = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  lognormalMs(median: number, p99: number): number {
    return median * Math.exp((Math.log(p99 / median) / Z99) * this.normal());
  }

  /** `chars` hex digits, 8 per random draw (ids are most of what `coral demo load` spends its CPU on). */
  hex(chars: number): string {
    let s = "";
    for (let n = 0; n < chars; n += 8) {
      const r = Math.floor(this.random() * 2 ** 32);
      s += HEX_BYTE[r >>> 24]! + HEX_BYTE[(r >>> 16) & 0xff]! + HEX_BYTE[(r >>> 8) & 0xff]! + HEX_BYTE[r & 0xff]!;
    }
    return s.length === chars ? s : s.slice(0, chars);
  }

  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** Poisson-ish count with mean `mean` (normal approximation is plenty at these rates). */
  count(mean: number): number {
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * this.normal()));
  }
}

interface Incident {
  service: string;
  fromMs: number;
  toMs: number;
  errorRate: number;
}

class TraceBuilder {
  readonly spans: SpanRecord[] = [];
  private readonly traceId: string;

  constructor(
    private readonly g: Gen,
    private readonly incidents: Incident[],
    private readonly staging?: Staging,
  ) {
    this.traceId = g.hex(32);
  }

  /** Emits the SERVER span for `route` (and everything below it); returns its duration and failure. */
  serve(route: Route, parentSpanId: string | null, startMs: number): { durationMs: number; failed: boolean } {
    const g = this.g;
    const spec = SERVICES[route.service]!;
    const spanId = g.hex(16);
    const own = g.lognormalMs(route.median, route.p99);
    let cursor = startMs + own * 0.3;
    let childFailed = false;
    /** This process's CLIENT and INTERNAL spans: they share the SERVER span's resource. */
    const local: SpanRecord[] = [];
    for (const call of route.calls ?? []) {
      const clientId = g.hex(16);
      const network = 0.3 + g.random() * 1.2;
      const child = this.serve(call, clientId, cursor + network / 2);
      const clientMs = child.durationMs + network;
      local.push(this.span(clientId, spanId, route.service, `${call.method} ${call.path}`, "CLIENT", cursor, clientMs, child.failed, child.failed ? 502 : 200, {
        "http.method": call.method,
        "peer.service": call.service,
      }));
      this.spans.push(local.at(-1)!);
      childFailed ||= child.failed;
      cursor += clientMs;
    }
    if (route.internal) {
      const dbMs = own * (0.5 + g.random() * 0.3);
      local.push(this.span(g.hex(16), spanId, route.service, route.internal, "INTERNAL", cursor, dbMs, false, null, { "db.system": "postgresql" }));
      this.spans.push(local.at(-1)!);
    }
    let durationMs = cursor - startMs + own * 0.7;
    const rate = this.incidents.find((i) => i.service === route.service && startMs >= i.fromMs && startMs < i.toMs)?.errorRate ?? spec.errorRate;
    let failed = childFailed || g.random() < rate;
    let status = failed ? (childFailed ? 502 : [500, 503, 504][g.int(3)]!) : route.method === "POST" ? 201 : 200;
    const instance = g.int(spec.instances);
    const attributes: Record<string, string | number> = {
      "http.method": route.method,
      "http.route": route.path,
      "http.status_code": status,
      "service.instance.id": "",
    };
    let pod = { name: podName(route.service, instance), version: spec.version };
    if (this.staging?.service === route.service) {
      const staged = this.staging.request(route.path, startMs, durationMs);
      durationMs += staged.extraMs;
      if (staged.failStatus !== null && !failed) {
        failed = true;
        attributes["http.status_code"] = status = staged.failStatus;
      }
      Object.assign(attributes, staged.attributes);
      pod = staged.pod;
    }
    // The pod is the instance, as its resource says (and `coral demo load` sends).
    attributes["service.instance.id"] = pod.name;
    const server = this.span(spanId, parentSpanId, route.service, `${route.method} ${route.path}`, "SERVER", startMs, durationMs, failed, status, attributes);
    const resource = podResources.get(route.service, pod);
    for (const s of [server, ...local]) s.resourceRows = resource;
    this.spans.push(server);
    return { durationMs, failed };
  }

  private span(
    spanId: string,
    parentSpanId: string | null,
    serviceName: string,
    name: string,
    kind: SpanRecord["kind"],
    startMs: number,
    durationMs: number,
    failed: boolean,
    httpStatusCode: number | null,
    attributes: SpanRecord["attributes"],
  ): SpanRecord {
    return {
      traceId: this.traceId,
      spanId,
      parentSpanId,
      serviceName,
      name,
      kind,
      startTimeMs: startMs,
      durationNs: Math.round(durationMs * 1e6),
      statusCode: failed ? "ERROR" : kind === "SERVER" ? "OK" : "UNSET",
      httpStatusCode,
      attributes,
    };
  }
}

/**
 * The OTLP resource of the pod that served a span, as `span_attributes` keeps it: what `coral demo
 * load` sends for it (load.ts) and the OTLP decoder keeps (service.name aside), so a seeded demo
 * and a loaded one store the same rows. One rows array per pod, shared by its spans, as the
 * decoder shares a resource's.
 */
const podResources = {
  rows: new Map<string, AttributeRows>(),
  get(service: string, pod: { name: string; version: string }): AttributeRows {
    const id = `${service}\u0000${pod.name}\u0000${pod.version}`;
    let rows = this.rows.get(id);
    if (!rows) {
      const spec = SERVICES[service]!;
      rows = toAttributeRows({
        "service.namespace": spec.namespace,
        "cloud.region": spec.region,
        "service.instance.id": pod.name,
        "k8s.pod.name": pod.name,
        "service.version": pod.version,
      });
      this.rows.set(id, rows);
    }
    return rows;
  },
};

/** The keys podResources puts first, which `coral demo load` sends as fields of its LoadResource. */
export const DEMO_RESOURCE_FIELDS = ["service.namespace", "cloud.region", "service.instance.id"] as const;

/** Instance `i` of a service as a pod of its Deployment: `<service>-<ReplicaSet hash>-<5 characters>`. */
function podName(service: string, i: number): string {
  const suffix = ["x7k2q", "m4pzt", "c9wnd", "r2hlv", "t8gjb", "f5qsx"][i % 6]!;
  return `${service}-${SERVICES[service]!.replicaSet}-${suffix}${i >= 6 ? i : ""}`;
}

function hostName(service: string, i: number): string {
  return `${service}-${i}.${SERVICES[service]!.region}.internal`;
}

/** A staged incident in the seed: what causes it, and for how many minutes before `nowMs` (default 30). */
export interface IncidentOption {
  kind: IncidentKind;
  effect?: IncidentEffect;
  minutes?: number;
}

export async function seedDemo(
  writer: WriteStore,
  o: { nowMs: number; hours?: number; seed?: number; incident?: IncidentOption },
): Promise<{ spans: number; services: string[]; incident?: IncidentPlan }> {
  const hours = o.hours ?? 3;
  const seed = o.seed ?? 42;
  const g = new Gen(prng(seed));
  const endMs = o.nowMs;
  const startMs = endMs - hours * 3_600_000;
  const services = Object.keys(SERVICES).sort();
  // A gateway incident 20–28 minutes ago: something for error-rate scripts to find.
  const incidents: Incident[] = [{ service: "payments", fromMs: endMs - 28 * MINUTE_MS, toMs: endMs - 20 * MINUTE_MS, errorRate: 0.12 }];
  const plan = o.incident && planIncident(o.incident.kind, { seed, fromMs: endMs - (o.incident.minutes ?? 30) * MINUTE_MS, toMs: endMs, effect: o.incident.effect });
  const staging = plan && new Staging(plan, seed);
  await writer.writeResources(resourcesSeenAt(services, [startMs, endMs], staging));
  const spans = await writeTraffic(writer, g, { startMs, endMs, seriesStartMs: startMs, incidents, staging });
  return { spans, services, ...(plan ? { incident: plan } : {}) };
}

/** About how many spans `seedDemo` writes for the `hours` before `nowMs` (without a staged incident's extra traffic), for progress messages. */
export function expectedSeedSpans(nowMs: number, hours = 3): number {
  const spans = (r: Route): number => 1 + (r.internal ? 1 : 0) + (r.calls ?? []).reduce((n, c) => n + 1 + spans(c), 0);
  const perMinute = TRAFFIC.reduce((n, t) => n + t.rate * spans(t.root), 0);
  let total = 0;
  for (let m = Math.floor((nowMs - hours * 3_600_000) / MINUTE_MS) * MINUTE_MS; m < nowMs; m += MINUTE_MS) total += perMinute * dailySwing(m);
  return total;
}

/**
 * The demo shop keeps serving after the seed: `coral colony start --demo` calls `tick()` every few
 * seconds, so "the last 5 minutes" still has traffic an hour later.
 */
export class LiveDemo {
  private readonly g: Gen;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly writer: WriteStore,
    private lastMs: number,
    seed = 43,
  ) {
    this.g = new Gen(prng(seed));
  }

  /** Ticks every `intervalMs`, one tick at a time; a failed tick is reported and the next one catches up. */
  start(intervalMs: number, onError: (err: Error) => void): void {
    this.timer = setInterval(() => {
      this.inFlight = this.inFlight.then(() => this.tick(Date.now())).catch(onError);
    }, intervalMs).unref();
  }

  /** Stops ticking and waits for a tick in progress, so the writer can be closed after it. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.inFlight;
  }

  /** Writes the traffic and host samples of the time since the previous tick; returns the span count. */
  async tick(nowMs: number): Promise<number> {
    if (nowMs <= this.lastMs) return 0;
    const services = Object.keys(SERVICES).sort();
    await this.writer.writeResources(resourcesSeenAt(services, [nowMs]));
    const n = await writeTraffic(this.writer, this.g, { startMs: this.lastMs, endMs: nowMs, seriesStartMs: this.lastMs, incidents: [] });
    this.lastMs = nowMs;
    return n;
  }
}

/**
 * The instances (pods) of every service, seen at `times`: the pod names the spans' resources carry,
 * so live or loaded traffic (the same pods) adds no instance of its own. A staged service is served
 * by the staging's pods instead.
 */
function resourcesSeenAt(services: string[], times: number[], staging?: Staging): ResourceRecord[] {
  const resources: ResourceRecord[] = [];
  for (const name of services) {
    const spec = SERVICES[name]!;
    const pods = staging?.service === name ? Staging.podNames : Array.from({ length: spec.instances }, (_, i) => podName(name, i));
    for (const instanceId of pods) {
      for (const seenAtMs of times) resources.push({ serviceName: name, namespace: spec.namespace, region: spec.region, instanceId, seenAtMs });
    }
  }
  return resources;
}

/** Traffic and host samples in [startMs, endMs), written in batches of BATCH_MINUTES. */
async function writeTraffic(
  writer: WriteStore,
  g: Gen,
  r: { startMs: number; endMs: number; seriesStartMs: number; incidents: Incident[]; staging?: Staging },
): Promise<number> {
  const { startMs, endMs, incidents, staging } = r;
  // The staged service's extra routes draw from their own stream, so the rest of the shop is unchanged.
  const stagedG = staging && new Gen(prng(staging.seed ^ 0x7a11c));
  const stagedTraffic = staging ? stagedRoutes(staging.service) : [];
  const services = Object.keys(SERVICES).sort();
  let total = 0;
  const firstMinute = Math.floor(startMs / MINUTE_MS) * MINUTE_MS;
  for (let batchStart = firstMinute; batchStart < endMs; batchStart += BATCH_MINUTES * MINUTE_MS) {
    const spans: SpanRecord[] = [];
    const samples: HostSample[] = [];
    const batchEnd = Math.min(batchStart + BATCH_MINUTES * MINUTE_MS, endMs);
    for (let minute = batchStart; minute < batchEnd; minute += MINUTE_MS) {
      const load = dailySwing(minute);
      for (const { rate, root } of TRAFFIC) {
        // A minute's worth is drawn and only what falls in the range kept, so ranges shorter than
        // a minute (live ticks) still add up to the minute's rate.
        const n = g.count(rate * load);
        for (let k = 0; k < n; k++) {
          const at = minute + g.random() * MINUTE_MS;
          if (at < startMs || at >= endMs) continue;
          const trace = new TraceBuilder(g, incidents, staging);
          trace.serve(root, null, at);
          for (const s of trace.spans) spans.push(s);
        }
      }
      for (const { rate, root } of stagedTraffic) {
        const n = stagedG!.count(rate * load);
        for (let k = 0; k < n; k++) {
          const at = minute + stagedG!.random() * MINUTE_MS;
          if (at < startMs || at >= endMs) continue;
          const trace = new TraceBuilder(stagedG!, incidents, staging);
          trace.serve(root, null, at);
          for (const s of trace.spans) spans.push(s);
        }
      }
      const sampleAt = minute + 15_000;
      if (sampleAt < startMs || sampleAt >= endMs) continue;
      const hoursIn = (sampleAt - r.seriesStartMs) / 3_600_000;
      for (const name of services) {
        const spec = SERVICES[name]!;
        for (let i = 0; i < spec.instances; i++) {
          // legacy-api leaks memory until it is restarted every two hours.
          const leak = name === "legacy-api" ? 20 * ((hoursIn % 2) / 2) : 0;
          const cpu = clamp(spec.cpu * load + 6 * g.normal(), 1, 100);
          const memoryPercent = clamp(spec.memory + leak + 2 * g.normal(), 1, 99);
          samples.push({
            timestampMs: sampleAt,
            hostName: hostName(name, i),
            serviceName: name,
            cpuPercent: round2(cpu),
            memoryPercent: round2(memoryPercent),
            memoryUsedBytes: Math.round((spec.memoryTotalBytes * memoryPercent) / 100),
            memoryTotalBytes: spec.memoryTotalBytes,
          });
        }
      }
    }
    if (spans.length) await writer.writeSpans(spans);
    if (samples.length) await writer.writeHostSamples(samples);
    total += spans.length;
  }
  return total;
}

/** Requests the staged service serves besides the shop's own calls (its other API clients). */
function stagedRoutes(service: string): { rate: number; root: Route }[] {
  return EXTRA_ROUTES.map((r) => ({ rate: r.rate, root: { service, method: r.method, path: r.path, median: r.median, p99: r.p99 } }));
}

/** Traffic swings ±30% over a day, so charts over a few hours are not flat. */
function dailySwing(minute: number): number {
  return 1 + 0.3 * Math.sin((2 * Math.PI * (minute % 86_400_000)) / 86_400_000);
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/** A service of the demo shop as an OTLP resource would describe it. */
export interface DemoService {
  name: string;
  namespace: string;
  region: string;
  instances: number;
}

export function demoServices(): DemoService[] {
  return Object.entries(SERVICES).map(([name, s]) => ({ name, namespace: s.namespace, region: s.region, instances: s.instances }));
}

/**
 * The same shop as live traffic, one trace at a time: trace shapes are drawn in proportion to their
 * demo rates, with the same latency and error model. Deterministic for a given seed.
 */
export class DemoTraffic {
  private readonly g: Gen;

  private readonly traffic: { rate: number; root: Route }[];
  private readonly total: number;
  private readonly staging?: Staging;

  /** `incident`: staged on every request for as long as the traffic runs. */
  constructor(seed = 42, incident?: IncidentSpec) {
    this.g = new Gen(prng(seed));
    if (incident) this.staging = new Staging(planIncident(incident.kind, { seed, fromMs: -Infinity, toMs: Infinity, effect: incident.effect }), seed);
    this.traffic = this.staging ? [...TRAFFIC, ...stagedRoutes(this.staging.service)] : TRAFFIC;
    this.total = this.traffic.reduce((n, t) => n + t.rate, 0);
  }

  /** The staged incident, if any. */
  get incident(): IncidentPlan | undefined {
    return this.staging?.plan;
  }

  /** The spans of one trace whose root starts at `startMs`. */
  trace(startMs: number): SpanRecord[] {
    let pick = this.g.random() * this.total;
    const shape = this.traffic.find((t) => (pick -= t.rate) < 0) ?? this.traffic[0]!;
    const b = new TraceBuilder(this.g, [], this.staging);
    b.serve(shape.root, null, startMs);
    return b.spans;
  }
}
