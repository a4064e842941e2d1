// What the ingest paths (OTLP, the demo) hand the Writer: plain records, one per span, resource,
// host reading or latency observation, already validated.

export type AttributeValue = string | number | boolean | null | AttributeValue[] | { [key: string]: AttributeValue };

export interface SpanRecord {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  serviceName: string;
  name: string;
  kind: "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER";
  startTimeMs: number;
  durationNs: number;
  statusCode: "UNSET" | "OK" | "ERROR";
  httpStatusCode: number | null;
  /** The span's attributes, or their JSON text when the caller already has it (the OTLP decoder does). */
  attributes: Record<string, AttributeValue> | string;
  /**
   * The same attributes as `span_attributes` stores them (see AttributeRows), when the caller
   * already has them (the OTLP decoder does): otherwise the Writer derives them from `attributes`.
   */
  attributeRows?: AttributeRows;
  /** The attributes of the span's OTLP resource (k8s.pod.name, service.version, …), bounded by RESOURCE_LIMITS. */
  resourceRows?: AttributeRows;
}

/**
 * Attributes as `span_attributes` rows: `[key, value, key, value, …]`, one entry per key, values as
 * text — strings as they are, other values as JSON, as DuckDB's json_extract_string gives them —
 * and null values left out (they read as absent, as they did from the JSON).
 */
export type AttributeRows = readonly string[];

/**
 * A resource's attributes are stored with every span of it, so they are bounded per resource: the
 * first `maxKeys` keys, and no more than `maxChars` of keys and values together (what comes after is
 * dropped). A Kubernetes pod's resource (k8s.*, container.*, host.*, process.*, telemetry.sdk.*)
 * has 20–40 keys and well under 4,000 characters.
 */
export const RESOURCE_LIMITS = { maxKeys: 64, maxChars: 8192 } as const;

/** An attribute value as `span_attributes` stores it; null for JSON null (no row). */
export function attributeText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** `attributes` as AttributeRows; the last of a repeated key wins, as in JSON.parse. */
export function toAttributeRows(attributes: Readonly<Record<string, unknown>>): AttributeRows {
  const rows: string[] = [];
  for (const k in attributes) {
    const v = attributeText(attributes[k]);
    if (v !== null) rows.push(k, v);
  }
  return rows;
}

/** A span's own attributes as rows, from whichever form its producer gave them in. */
function ownRows(s: SpanRecord): AttributeRows {
  if (s.attributeRows) return s.attributeRows;
  if (typeof s.attributes !== "string") return toAttributeRows(s.attributes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(s.attributes);
  } catch {
    return []; // kept verbatim in spans.attributes; nothing to group by
  }
  return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? toAttributeRows(parsed as Record<string, unknown>) : [];
}

/**
 * What `span_attributes` stores for a span, whichever engine holds it: the span's own attributes,
 * and those of its resource whose key the span does not have itself (a span attribute hides a
 * resource attribute of the same key).
 */
export function storedAttributes(s: SpanRecord): { own: AttributeRows; resource: AttributeRows } {
  const own = ownRows(s);
  const res = s.resourceRows ?? [];
  if (res.length === 0 || own.length === 0) return { own, resource: res };
  const ownKeys = new Set<string>();
  for (let i = 0; i < own.length; i += 2) ownKeys.add(own[i]!);
  const resource: string[] = [];
  for (let i = 0; i < res.length; i += 2) if (!ownKeys.has(res[i]!)) resource.push(res[i]!, res[i + 1]!);
  return { own, resource };
}

/**
 * Keeps pairs in order until RESOURCE_LIMITS is reached; a later value of a repeated key replaces
 * the earlier one. `pairs` is `[key, value, …]` with values already as text (null: no row).
 */
export function boundedResourceRows(pairs: Iterable<readonly [string, string | null]>): AttributeRows {
  const kept = new Map<string, string>();
  let chars = 0;
  for (const [k, v] of pairs) {
    if (v === null) {
      kept.delete(k);
      continue;
    }
    const before = kept.get(k);
    const cost = k.length + v.length - (before === undefined ? 0 : k.length + before.length);
    if ((before === undefined && kept.size >= RESOURCE_LIMITS.maxKeys) || chars + cost > RESOURCE_LIMITS.maxChars) continue;
    kept.set(k, v);
    chars += cost;
  }
  return [...kept].flat();
}

export interface ResourceRecord {
  serviceName: string;
  namespace: string;
  region: string;
  instanceId: string;
  seenAtMs: number;
}

/** One host's reading at one instant; a metric the source did not report is null, never 0. */
export interface HostSample {
  timestampMs: number;
  hostName: string;
  serviceName: string;
  cpuPercent: number | null;
  memoryPercent: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
}

/**
 * Latency observations that arrive already aggregated (OTLP histogram metrics): a count per log
 * bucket of the colony's sketch, for one service, metric and minute.
 */
export interface LatencyRecord {
  serviceName: string;
  metric: string;
  timestampMs: number;
  /** Sketch bucket index → number of observations. */
  buckets: Map<number, number>;
  errorCount: number;
  sumNs: number;
  minNs: number;
  maxNs: number;
  /**
   * Set for a point of a cumulative stream: `buckets` and `sumNs` are then totals since `startNs`,
   * and what is stored is their increment over the stream's last stored point (cumulative.ts);
   * `errorCount`, `minNs` and `maxNs` are derived from that increment.
   */
  cumulative?: { stream: string; startNs: bigint; errors: boolean };
}
