// A batch's contributions to the span and latency rollups, computed in JS in one pass: the same
// numbers whichever engine stores them (DuckDB merges them into its rows, ClickHouse inserts them
// as rows its tables add up).
import { HTTP_SERVER_DURATION } from "../store/schema.js";
import { bucketIndex, bucketValue } from "../store/sketch.js";
import { increment, type StreamPoint } from "./cumulative.js";
import { offerExemplar } from "./exemplars.js";
import type { LatencyRecord, SpanRecord } from "./records.js";
import { MINUTE_MS, addSummary, type SummaryDelta, type TraceDelta } from "./rollups.js";

export function isErrorSpan(s: SpanRecord): boolean {
  return s.statusCode === "ERROR" || (s.httpStatusCode ?? 0) >= 500;
}

export interface SpanDeltas {
  /** Start of every minute a span of the batch starts in. */
  minutes: number[];
  /** `http.server.duration` of the batch's SERVER spans, per (service, metric, minute). */
  summaries: Map<string, SummaryDelta>;
  /** Per (trace, service): the batch's part of its trace summary. */
  traces: Map<string, TraceDelta>;
}

/** Throws (RangeError) on values the store cannot hold, so bad input fails before any write. */
export function spanDeltas(spans: readonly SpanRecord[]): SpanDeltas {
  const summaries = new Map<string, SummaryDelta>();
  const traces = new Map<string, TraceDelta>();
  const members = new Map<string, Set<string>>();
  const minutes = new Set<number>();
  let lo = Infinity;
  for (const s of spans) {
    if (!Number.isFinite(s.startTimeMs) || !Number.isFinite(s.durationNs)) {
      throw new RangeError(`span ${s.spanId}: start time and duration must be finite numbers`);
    }
    if (s.startTimeMs < lo) lo = s.startTimeMs;
    minutes.add(Math.floor(s.startTimeMs / MINUTE_MS) * MINUTE_MS);
    const tkey = `${s.traceId}\u0000${s.serviceName}`;
    let set = members.get(tkey);
    if (!set) members.set(tkey, (set = new Set()));
    set.add(s.spanId);
    if (s.kind === "SERVER") {
      const minuteMs = Math.floor(s.startTimeMs / MINUTE_MS) * MINUTE_MS;
      const key = `${s.serviceName}\u0000${HTTP_SERVER_DURATION}\u0000${minuteMs}`;
      let d = summaries.get(key);
      if (!d) {
        d = { minuteMs, serviceName: s.serviceName, metric: HTTP_SERVER_DURATION, count: 0, errors: 0, sum: 0, min: Infinity, max: -Infinity, buckets: new Map() };
        summaries.set(key, d);
      }
      const v = Math.round(s.durationNs);
      d.count++;
      if (isErrorSpan(s)) d.errors++;
      d.sum += v;
      if (v < d.min) d.min = v;
      if (v > d.max) d.max = v;
      const b = bucketIndex(v);
      d.buckets.set(b, (d.buckets.get(b) ?? 0) + 1);
      offerExemplar((d.exemplars ??= new Map()), b, { traceId: s.traceId, spanId: s.spanId, startTimeMs: s.startTimeMs, durationNs: v });
    }
  }
  // A service's local roots in this batch: spans whose parent is not one of the service's own spans
  // of the same trace here. A root that arrives in a later batch than its children still wins the
  // merge, because it starts no later and ends no earlier than they do.
  const baseUs = Math.round(lo * 1000);
  const fallback = new Map<string, TraceDelta>();
  for (const s of spans) {
    const tkey = `${s.traceId}\u0000${s.serviceName}`;
    const isRoot = s.parentSpanId === null || !members.get(tkey)!.has(s.parentSpanId);
    const startUs = Math.round(s.startTimeMs * 1000);
    const endNs = (startUs - baseUs) * 1000 + Math.round(s.durationNs);
    let t = traces.get(tkey);
    if (!t) {
      t = { traceId: s.traceId, serviceName: s.serviceName, rootName: "", rootStartUs: Infinity, rootEndNs: -Infinity, baseUs, spanCount: 0, error: false };
      traces.set(tkey, t);
    }
    t.spanCount++;
    if (isErrorSpan(s)) t.error = true;
    if (isRoot) {
      const better = startUs < t.rootStartUs || (startUs === t.rootStartUs && endNs > t.rootEndNs);
      if (better) {
        t.rootName = s.name;
        t.rootStartUs = startUs;
      }
      if (endNs > t.rootEndNs) t.rootEndNs = endNs;
    } else {
      // Parent links that form a cycle leave a service without a local root: its earliest span stands in.
      let f = fallback.get(tkey);
      if (!f) fallback.set(tkey, (f = { ...t, rootStartUs: Infinity, rootEndNs: -Infinity }));
      if (startUs < f.rootStartUs) {
        f.rootName = s.name;
        f.rootStartUs = startUs;
      }
      if (endNs > f.rootEndNs) f.rootEndNs = endNs;
    }
  }
  for (const [tkey, t] of traces) {
    if (t.rootStartUs !== Infinity) continue;
    const f = fallback.get(tkey)!;
    t.rootName = f.rootName;
    t.rootStartUs = f.rootStartUs;
    t.rootEndNs = f.rootEndNs;
  }
  return { minutes: [...minutes], summaries, traces };
}

/**
 * The per-(service, metric, minute) contributions of pre-aggregated latency records. A cumulative
 * record contributes its increment over the stream's last point: `stored` gives the last stored
 * point, and `changed` collects the points to store (in the same write as the contributions).
 */
export function latencyDeltas(
  records: readonly LatencyRecord[],
  stored: (stream: string) => StreamPoint | undefined,
  changed: Map<string, StreamPoint>,
): Map<string, SummaryDelta> {
  const summaries = new Map<string, SummaryDelta>();
  for (const r of records) {
    let { buckets, sumNs, errorCount, minNs, maxNs } = r;
    if (r.cumulative) {
      const { stream, startNs, errors } = r.cumulative;
      const point = { startNs, sumNs, buckets };
      const inc = increment(changed.get(stream) ?? stored(stream), point);
      changed.set(stream, point);
      if (inc.count <= 0) continue;
      ({ buckets, sumNs } = inc);
      errorCount = errors ? inc.count : 0;
      const observed = [...buckets.keys()];
      minNs = bucketValue(Math.min(...observed));
      maxNs = bucketValue(Math.max(...observed));
    }
    let count = 0;
    for (const n of buckets.values()) count += n;
    if (count === 0) continue;
    const minuteMs = Math.floor(r.timestampMs / MINUTE_MS) * MINUTE_MS;
    addSummary(summaries, `${r.serviceName}\u0000${r.metric}\u0000${minuteMs}`, {
      minuteMs, serviceName: r.serviceName, metric: r.metric, count, errors: errorCount, sum: sumNs, min: minNs, max: maxNs, buckets,
    });
  }
  return summaries;
}
