// One set of spans in the two shapes a test of `--otel-schema` needs: an OTLP/HTTP JSON request for
// a colony to ingest, and the rows the OpenTelemetry Collector's ClickHouse exporter writes to its
// `otel_traces` table for the same spans (its DDL: otelTracesDdl). Times are whole microseconds,
// Coral's precision, and every attribute value is text, as the exporter keeps it, so both copies
// hold the same data.

export interface TestSpan {
  traceId: string;
  spanId: string;
  /** "" for a root. */
  parentSpanId: string;
  resource: Record<string, string>;
  name: string;
  kind: "SERVER" | "CLIENT" | "INTERNAL";
  startUs: number;
  durationNs: number;
  status: "UNSET" | "OK" | "ERROR";
  attributes: Record<string, string>;
}

const KIND_NUMBER = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
const STATUS_NUMBER = { UNSET: 0, OK: 1, ERROR: 2 } as const;

/** A small deterministic generator: the same spans on every run. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

function resourceOf(service: string, instance: number): Record<string, string> {
  return {
    "service.name": service,
    "service.namespace": service === "orders" ? "backoffice" : "shop",
    "cloud.region": service === "orders" ? "us-east-1" : "eu-west-1",
    "service.instance.id": `${service}-${instance}`,
    "host.name": `node-${instance}`,
    "k8s.pod.name": `${service}-pod-${instance}`,
  };
}

/**
 * `traces` traces over the two hours before `nowMs`: frontend (SERVER) calls payments (SERVER),
 * which queries a database (CLIENT) and calls orders (SERVER); some fail, by status or HTTP 5xx.
 */
export function testSpans(nowMs: number, traces = 400): TestSpan[] {
  const rnd = random(42);
  const spans: TestSpan[] = [];
  let nextSpan = 1;
  const routes = ["/pay", "/refund", "/status"];
  for (let t = 0; t < traces; t++) {
    const traceId = hex(0xabc000 + t, 32);
    const startUs = (nowMs - 7_200_000) * 1000 + Math.floor(rnd() * 7_190_000_000);
    const slow = rnd() < 0.1;
    const fail = rnd() < 0.08;
    const http = fail ? "503" : rnd() < 0.05 ? "404" : "200";
    const route = routes[Math.floor(rnd() * routes.length)]!;
    const pod = Math.floor(rnd() * 3);
    const payNs = Math.round((slow ? 800e6 : 20e6) * (0.5 + rnd()) + rnd() * 1000);
    const dbNs = Math.round(payNs * 0.3 * rnd()) + 7;
    const ordersNs = Math.round(payNs * 0.4 * rnd()) + 11;
    const fe = hex(nextSpan++, 16);
    const pay = hex(nextSpan++, 16);
    spans.push({
      traceId, spanId: fe, parentSpanId: "", resource: resourceOf("frontend", pod % 2), name: `GET ${route}`, kind: "SERVER",
      startUs, durationNs: payNs + 2_000_123, status: "UNSET", attributes: { "http.route": route, "http.response.status_code": http },
    });
    spans.push({
      traceId, spanId: pay, parentSpanId: fe, resource: resourceOf("payments", pod), name: `POST ${route}`, kind: "SERVER",
      startUs: startUs + 1000, durationNs: payNs, status: fail && rnd() < 0.5 ? "ERROR" : "UNSET",
      attributes: { "http.route": route, "http.response.status_code": http, "payment.method": rnd() < 0.3 ? "card" : "wallet", ...(slow ? { "db.shard": "eu-3" } : {}) },
    });
    spans.push({
      traceId, spanId: hex(nextSpan++, 16), parentSpanId: pay, resource: resourceOf("payments", pod), name: "SELECT accounts", kind: "CLIENT",
      startUs: startUs + 1100, durationNs: dbNs, status: "UNSET", attributes: { "db.system": "postgresql" },
    });
    spans.push({
      traceId, spanId: hex(nextSpan++, 16), parentSpanId: pay, resource: resourceOf("orders", pod % 2), name: "GET /orders", kind: "SERVER",
      startUs: startUs + 1200 + Math.floor(dbNs / 1000), durationNs: ordersNs, status: "OK", attributes: { "http.route": "/orders", "http.response.status_code": "200" },
    });
  }
  return spans;
}

const attrs = (m: Record<string, string>) => Object.entries(m).map(([key, v]) => ({ key, value: { stringValue: v } }));

/** The spans as one OTLP/HTTP JSON request (one resourceSpans per resource). */
export function otlpRequest(spans: readonly TestSpan[]): unknown {
  const byResource = new Map<string, TestSpan[]>();
  for (const s of spans) {
    const k = JSON.stringify(s.resource);
    byResource.set(k, [...(byResource.get(k) ?? []), s]);
  }
  return {
    resourceSpans: [...byResource].map(([resource, list]) => ({
      resource: { attributes: attrs(JSON.parse(resource) as Record<string, string>) },
      scopeSpans: [
        {
          spans: list.map((s) => ({
            traceId: s.traceId,
            spanId: s.spanId,
            ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
            name: s.name,
            kind: KIND_NUMBER[s.kind],
            startTimeUnixNano: `${BigInt(s.startUs) * 1000n}`,
            endTimeUnixNano: `${BigInt(s.startUs) * 1000n + BigInt(s.durationNs)}`,
            attributes: attrs(s.attributes),
            status: { code: STATUS_NUMBER[s.status] },
          })),
        },
      ],
    })),
  };
}

/** `YYYY-MM-DD hh:mm:ss.fffffffff` in UTC, as DateTime64(9) reads it. */
function nanoText(startUs: number): string {
  const ms = Math.floor(startUs / 1000);
  return `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")}.${String(startUs % 1_000_000).padStart(6, "0")}000`;
}

/**
 * The exporter's rows for the spans (JSONEachRow). `names`: how the exporter spelled kind and
 * status — "proto" (SPAN_KIND_SERVER, STATUS_CODE_ERROR; older versions) or "short" (Server, Error).
 */
export function otelRows(spans: readonly TestSpan[], names: "proto" | "short" = "proto"): Record<string, unknown>[] {
  const cap = (s: string) => s[0] + s.slice(1).toLowerCase();
  return spans.map((s) => ({
    Timestamp: nanoText(s.startUs),
    TraceId: s.traceId,
    SpanId: s.spanId,
    ParentSpanId: s.parentSpanId,
    TraceState: "",
    SpanName: s.name,
    SpanKind: names === "proto" ? `SPAN_KIND_${s.kind}` : cap(s.kind),
    ServiceName: s.resource["service.name"],
    ResourceAttributes: s.resource,
    ScopeName: "test",
    ScopeVersion: "1",
    SpanAttributes: s.attributes,
    Duration: s.durationNs,
    StatusCode: names === "proto" ? `STATUS_CODE_${s.status}` : cap(s.status),
    StatusMessage: "",
  }));
}

/**
 * A table of the exporter's traces schema (written from its documented columns; the indexes,
 * codecs and TTL are left out, as they change no answer). `duration`: the exporter's newer UInt64
 * or older Int64.
 */
export function otelTracesDdl(table: string, duration: "UInt64" | "Int64" = "UInt64"): string {
  return `CREATE TABLE ${table} (
  Timestamp DateTime64(9),
  TraceId String,
  SpanId String,
  ParentSpanId String,
  TraceState String,
  SpanName LowCardinality(String),
  SpanKind LowCardinality(String),
  ServiceName LowCardinality(String),
  ResourceAttributes Map(LowCardinality(String), String),
  ScopeName String,
  ScopeVersion String,
  SpanAttributes Map(LowCardinality(String), String),
  Duration ${duration},
  StatusCode LowCardinality(String),
  StatusMessage String,
  Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes Map(LowCardinality(String), String)),
  Links Nested (TraceId String, SpanId String, TraceState String, Attributes Map(LowCardinality(String), String))
) ENGINE = MergeTree PARTITION BY toDate(Timestamp) ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))`;
}
