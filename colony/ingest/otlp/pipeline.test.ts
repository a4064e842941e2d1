import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Store } from "../../store/store.js";
import { Writer } from "../writer.js";
import type { HostSample, LatencyRecord, ResourceRecord, SpanRecord } from "../records.js";
import { IngestPipeline, InvalidDataError, UnavailableError } from "./pipeline.js";

const T0 = Date.UTC(2026, 0, 1, 12);

const span = (id: string, service = "svc"): SpanRecord => ({
  traceId: "ab".repeat(16), spanId: id.padStart(16, "0"), parentSpanId: null, serviceName: service, name: "op",
  kind: "SERVER", startTimeMs: T0, durationNs: 1e6, statusCode: "OK", httpStatusCode: null, attributes: "{}",
});
const sample = (host: string, cpu = 10): HostSample => ({ timestampMs: T0, hostName: host, serviceName: "svc", cpuPercent: cpu, memoryPercent: null, memoryUsedBytes: null, memoryTotalBytes: null });
const resource = (service: string): ResourceRecord => ({ serviceName: service, namespace: "", region: "", instanceId: service, seenAtMs: T0 });

/**
 * A Writer that keeps what each call would commit, and fails a call (committing nothing of it, as a
 * rolled-back transaction does) when `fail` says so.
 */
function fakeWriter(fail: { spans?: (ids: string[]) => Error | undefined; metrics?: (hosts: string[]) => Error | undefined; resources?: () => Error | undefined } = {}) {
  const stored = { spans: [] as string[], hosts: [] as string[], resources: [] as string[], calls: [] as string[] };
  let gate: Promise<void> = Promise.resolve();
  const writer = {
    prepareSpans: (spans: SpanRecord[]) => ({ count: spans.length, ids: spans.map((s) => s.spanId) }),
    writePrepared: async (parts: { ids: string[] }[]) => {
      await gate;
      const ids = parts.flatMap((p) => p.ids);
      stored.calls.push(`spans:${ids.length}`);
      const err = fail.spans?.(ids);
      if (err) throw err;
      stored.spans.push(...ids);
    },
    writeMetrics: async (samples: HostSample[], latency: LatencyRecord[]) => {
      await gate;
      const hosts = samples.map((s) => s.hostName);
      stored.calls.push(`metrics:${hosts.length + latency.length}`);
      const err = fail.metrics?.(hosts);
      if (err) throw err;
      stored.hosts.push(...hosts);
    },
    writeResources: async (rs: ResourceRecord[]) => {
      if (rs.length === 0) return;
      stored.calls.push(`resources:${rs.length}`);
      const err = fail.resources?.();
      if (err) throw err;
      stored.resources.push(...rs.map((r) => r.serviceName));
    },
  };
  return {
    writer: writer as unknown as Writer,
    stored,
    /** Holds commits until the returned function is called, so submissions gather into one batch. */
    hold(): () => void {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return open;
    },
  };
}

describe("IngestPipeline: one request's data never fails, duplicates or delays another's", () => {
  it("a batch whose transaction fails stores nothing, and each request retried alone is stored exactly once", async () => {
    let failures = 0;
    // The database fails the first (batched) transaction only, as a transient fault would.
    const w = fakeWriter({ spans: (ids) => (ids.length > 1 && failures++ === 0 ? new Error("IO Error: disk hiccup") : undefined) });
    const p = new IngestPipeline(w.writer);
    const open = w.hold();
    // The first request commits alone (held); the next three gather meanwhile into one batch.
    const first = p.submit({ spans: [span("0")] });
    const done = [p.submit({ spans: [span("1")] }), p.submit({ spans: [span("2")] }), p.submit({ spans: [span("3")] })];
    open();
    await Promise.all([first, ...done]);
    expect(w.stored.spans.sort()).toEqual(["0", "1", "2", "3"].map((s) => s.padStart(16, "0")));
    expect(w.stored.calls).toEqual(["spans:1", "spans:3", "spans:1", "spans:1", "spans:1"]);
    await p.close();
  });

  it("refuses only the request that fails on its own — 400 when no retry can help, 503 otherwise — and stores the others once", async () => {
    for (const [error, kind] of [
      [new Error("Conversion Error: Type DOUBLE with value inf can't be cast"), InvalidDataError],
      [new Error("Out of Range Error: Overflow in addition of INT64"), InvalidDataError],
      [new RangeError("The number NaN cannot be converted to a BigInt"), InvalidDataError],
      [new Error("bigint out of int64 range"), InvalidDataError],
      [new Error("IO Error: could not write file"), UnavailableError],
    ] as const) {
      const w = fakeWriter({ metrics: (hosts) => (hosts.includes("bad") ? error : undefined) });
      const p = new IngestPipeline(w.writer);
      const open = w.hold();
      const first = p.submit({ hostSamples: [sample("first")] });
      const results = Promise.allSettled([
        p.submit({ hostSamples: [sample("a")], resources: [resource("a")] }),
        p.submit({ hostSamples: [sample("bad"), sample("bad-but-valid-neighbour")], resources: [resource("bad")] }),
        p.submit({ hostSamples: [sample("b")], resources: [resource("b")] }),
        p.submit({ spans: [span("1")], resources: [resource("traced")] }),
      ]);
      open();
      await first;
      const [a, bad, b, traced] = await results;
      expect([a.status, b.status, traced.status]).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
      expect(bad.status).toBe("rejected");
      expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(kind);
      // Nothing of the refused request, nothing twice, and the spans never waited on the metrics' fate.
      expect(w.stored.hosts.sort()).toEqual(["a", "b", "first"]);
      // One try for the batch (failed), then one for each of its metrics requests alone.
      expect(w.stored.calls.filter((c) => c.startsWith("metrics"))).toEqual(["metrics:1", "metrics:4", "metrics:1", "metrics:2", "metrics:1"]);
      expect(w.stored.spans).toEqual([span("1").spanId]);
      expect(w.stored.resources.sort()).toEqual(["a", "b", "traced"]);
      await p.close();
    }
  });

  it("writes resources after the data; if that fails the data stands and its resources follow with the next batch", async () => {
    let down = true;
    const w = fakeWriter({ resources: () => (down ? new Error("IO Error: locked") : undefined) });
    const p = new IngestPipeline(w.writer);
    await p.submit({ spans: [span("1")], resources: [resource("svc")] }); // acknowledged: its spans are committed
    await expect(p.submit({ resources: [resource("only-resources")] })).rejects.toBeInstanceOf(UnavailableError);
    expect(w.stored).toMatchObject({ spans: [span("1").spanId], resources: [] });
    down = false;
    await p.submit({ hostSamples: [sample("h")] });
    expect(w.stored.resources).toEqual(["svc"]);
    expect(w.stored.calls).toEqual(["spans:1", "resources:1", "resources:2", "metrics:1", "resources:1"]);
    await p.close();
  });

  it("refuses rows the store cannot hold before they are queued: 400, and the writer never sees them", async () => {
    const w = fakeWriter();
    const p = new IngestPipeline(w.writer);
    const bad: [string, Parameters<IngestPipeline["submit"]>[0]][] = [
      ["NaN cpu", { hostSamples: [sample("h", NaN)] }],
      ["bytes past BIGINT", { hostSamples: [{ ...sample("h"), memoryUsedBytes: 2 ** 64 }] }],
      ["span after 2200", { spans: [{ ...span("1"), startTimeMs: Date.UTC(2201, 0, 1) }] }],
      ["span of NaN ns", { spans: [{ ...span("1"), durationNs: NaN }] }],
      ["bucket index past INTEGER", { latency: [{ serviceName: "s", metric: "m", timestampMs: T0, buckets: new Map([[2 ** 40, 1]]), errorCount: 0, sumNs: 0, minNs: 0, maxNs: 0 }] }],
      ["counts past 2^53", { latency: [{ serviceName: "s", metric: "m", timestampMs: T0, buckets: new Map([[1, 2 ** 53], [2, 2 ** 53]]), errorCount: 0, sumNs: 0, minNs: 0, maxNs: 0 }] }],
      ["spans and metrics in one request", { spans: [span("1")], hostSamples: [sample("h")] }],
    ];
    for (const [name, part] of bad) await expect(p.submit(part), name).rejects.toBeInstanceOf(InvalidDataError);
    expect(w.stored.calls).toEqual([]);
    await p.close();
  });
});

describe("Writer.writeMetrics", () => {
  it("stores host samples and latency in one transaction: when the latency part fails, no host sample is left behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-metrics-"));
    const store = await Store.open(join(dir, "coral.duckdb"));
    const writer = new Writer(store);
    try {
      const count = async () => {
        const c = await store.connect();
        try {
          const q = async (t: string) => Number((await c.runAndReadAll(t)).getRowsJS()[0]![0]);
          return { samples: await q("SELECT count(*) FROM host_samples"), rollup: await q("SELECT count(*) FROM system_metrics_rollup"), latency: await q("SELECT count(*) FROM service_summary") };
        } finally {
          c.closeSync();
        }
      };
      // A minimum that cannot be stored (validation keeps it from real requests): the latency part
      // fails in the middle of the transaction, after the samples went in.
      const failing: LatencyRecord = { serviceName: "svc", metric: "http.server.request.duration", timestampMs: T0, buckets: new Map([[100, 2]]), errorCount: 0, sumNs: 1, minNs: NaN, maxNs: 1 };
      await expect(writer.writeMetrics([sample("h1")], [failing])).rejects.toThrow();
      expect(await count()).toEqual({ samples: 0, rollup: 0, latency: 0 });
      await writer.writeMetrics([sample("h1")], [{ ...failing, minNs: 1 }]);
      expect(await count()).toEqual({ samples: 1, rollup: 1, latency: 1 });
    } finally {
      await writer.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
