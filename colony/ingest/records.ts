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
