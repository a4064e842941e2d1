// What test/hostile/typed-deadline.test.ts (DuckDB) and typed-deadline-clickhouse.test.ts (chdb, with
// its fixture script clickhouse-deadline-fixture.ts) share: the requests both fixtures write before
// copying them in SQL, the explain that runs past the deadline, the span sent to OTLP meanwhile, and
// the worker's CPU time around a client going away. No vitest here: the fixture script imports it.
import { readFileSync } from "node:fs";
import type { ResourceRecord, SpanRecord } from "../../colony/ingest/records.js";
import type { SpawnedColony } from "./colony.js";

/** Requests written through the real writer; the fixtures then copy them in SQL. */
export const WRITTEN = 2_000;
/** Where the explains draw "slow": 50 ms, about half of the written requests (1 ms … 101 ms). */
export const SLOW_NS = 50_000_000;

/** ExplainSpans over every span of a fixture whose copies reach `allMs` back. */
export const explainAllRequest = (allMs: number) => ({ service: "api", slowThresholdNs: BigInt(SLOW_NS), timeRangeMs: BigInt(allMs) });

/**
 * WRITTEN requests of service "api" over the hour before `now`, 24 attributes each, and the
 * service's resource: what both fixtures write before copying.
 */
export async function writeRequests(
  writer: { writeSpans(s: SpanRecord[]): Promise<void>; writeResources(r: ResourceRecord[]): Promise<void> },
  now: number,
): Promise<void> {
  const spans: SpanRecord[] = [];
  for (let i = 0; i < WRITTEN; i++) {
    const attributes: Record<string, string> = {};
    for (let k = 0; k < 24; k++) attributes[`attr.${k}`] = `value-${k}-${(i * 7 + k) % (50 + k * 40)}`;
    spans.push({
      traceId: i.toString(16).padStart(32, "0"), spanId: i.toString(16).padStart(16, "0"), parentSpanId: null, serviceName: "api",
      name: "GET /x", kind: "SERVER", startTimeMs: now - 3_600_000 + i * 1_000, durationNs: 1e6 + (i % 1000) * 1e5,
      statusCode: i % 20 === 0 ? "ERROR" : "OK", httpStatusCode: 200, attributes,
    });
  }
  await writer.writeSpans(spans);
  await writer.writeResources([{ serviceName: "api", namespace: "hostile", region: "local", instanceId: "api-1", seenAtMs: now }]);
}

/** The message an explain cut at --query-timeout ends with. */
export const explainDeadlineMessage = (timeoutMs: number) =>
  `the query ran longer than the ${timeoutMs} ms query timeout (--query-timeout) and was cancelled — a shorter --window (explain compares every attribute of every request in it)`;

/** One span of service "late", sent to the colony's OTLP/HTTP endpoint as JSON. */
export function postLateSpan(colony: SpawnedColony): Promise<Response> {
  return fetch(`${colony.otlpUrl}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: "late" } }] },
        scopeSpans: [{ spans: [{ traceId: "f".repeat(32), spanId: "e".repeat(16), name: "GET /late", kind: 2, startTimeUnixNano: `${Date.now() * 1e6}`, endTimeUnixNano: `${Date.now() * 1e6 + 5e6}` }] }],
      }],
    }),
  });
}

/** CPU time (user + system) of the colony's worker so far, in clock ticks (1/100 s). */
export function workerTicks(colony: SpawnedColony): number {
  const stat = readFileSync(`/proc/${colony.workerPid()}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat (utime, stime), counted from the state (field 3).
  return Number(f[11]) + Number(f[12]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The worker's CPU ticks over `windowMs` while a query runs (from `windowMs / 2` on), then — after
 * `stop` (which ends the query's call) and `settleMs` more — over as long again.
 */
export async function workerTicksAcross(
  colony: SpawnedColony,
  o: { windowMs: number; settleMs: number; stop: () => Promise<void> },
): Promise<{ running: number; after: number }> {
  await sleep(o.windowMs / 2);
  const t0 = workerTicks(colony);
  await sleep(o.windowMs);
  const running = workerTicks(colony) - t0;
  await o.stop();
  await sleep(o.settleMs);
  const t1 = workerTicks(colony);
  await sleep(o.windowMs);
  return { running, after: workerTicks(colony) - t1 };
}
