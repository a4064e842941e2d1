import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writer } from "../ingest/writer.js";
import { Queries } from "../store/queries.js";
import { HTTP_SERVER_DURATION } from "../store/schema.js";
import { Store } from "../store/store.js";
import type { ResourceRecord, SpanRecord } from "../ingest/records.js";
import type { WriteStore } from "../store/engine.js";
import { DemoTraffic, expectedSeedSpans, LiveDemo, seedDemo } from "./demo.js";
import { INCIDENT_SERVICE } from "./incidents.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const HOUR = 3_600_000;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "coral-demo-"));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function seeded(name: string, o: { nowMs: number; hours?: number; seed?: number }) {
  const store = await Store.open(join(dir, `${name}.duckdb`));
  const writer = new Writer(store);
  const result = await seedDemo(writer, o);
  await writer.close();
  return { store, result };
}

/** A digest of every table, so "same data" means same rows, not just same counts. */
async function fingerprint(store: Store): Promise<string[]> {
  const conn = await store.connect();
  try {
    const out: string[] = [];
    for (const table of ["spans", "span_attributes", "trace_summary", "service_summary", "service_latency_buckets", "latency_exemplars", "system_metrics_rollup", "host_samples", "services", "service_instances"]) {
      const r = await conn.runAndReadAll(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR)), '') FROM ${table} t`);
      out.push(`${table}=${r.getRowsJS()[0]![0]}`);
    }
    return out;
  } finally {
    conn.closeSync();
  }
}

describe("seedDemo", () => {
  it("is deterministic for the same seed and now, and differs for another seed", async () => {
    const a = await seeded("a", { nowMs: NOW, hours: 0.5, seed: 11 });
    const b = await seeded("b", { nowMs: NOW, hours: 0.5, seed: 11 });
    try {
      expect(a.result).toEqual(b.result);
      expect(await fingerprint(a.store)).toEqual(await fingerprint(b.store));
    } finally {
      await Promise.all([a.store.close(), b.store.close()]);
    }
    // Another seed writes other spans: compared as written, not stored (a third store costs as much
    // as each of the two above, whose equality already shows the store adds nothing of its own).
    const writes = (seed: number) => seedWrites({ nowMs: NOW, hours: 0.5, seed });
    expect(await writes(12)).not.toEqual(await writes(11));
  });

  describe("with the defaults (3 hours)", () => {
    let store: Store;
    let queries: Queries;
    let result: { spans: number; services: string[] };

    beforeAll(async () => {
      ({ store, result } = await seeded("full", { nowMs: NOW }));
      queries = new Queries(store);
    });
    afterAll(() => store.close());

    const window = { sinceMs: NOW - 3 * HOUR, untilMs: NOW };
    const p = (service: string, q: number) => queries.percentile({ service, metric: HTTP_SERVER_DURATION, q, ...window }).then((r) => r.value);

    it("writes 100k–300k spans for the expected services", () => {
      expect(result.spans).toBeGreaterThanOrEqual(100_000);
      expect(result.spans).toBeLessThanOrEqual(300_000);
      expect(result.services).toEqual(expect.arrayContaining(["payments", "orders", "inventory", "legacy-api", "frontend", "auth"]));
      // What `coral colony start --demo` announces before seeding.
      expect(result.spans / expectedSeedSpans(NOW)).toBeGreaterThan(0.95);
      expect(result.spans / expectedSeedSpans(NOW)).toBeLessThan(1.05);
    });

    it("keeps every span inside the requested window", async () => {
      const conn = await store.connect();
      const [lo, hi] = (await conn.runAndReadAll("SELECT epoch_ms(min(start_time)), epoch_ms(max(start_time)) FROM spans")).getRowsJS()[0]!.map(Number);
      conn.closeSync();
      expect(lo).toBeGreaterThanOrEqual(NOW - 3 * HOUR);
      expect(hi).toBeLessThan(NOW);
    });

    it("gives each service its latency character", async () => {
      expect(await p("legacy-api", 0.99)).toBeGreaterThan(1_500e6);
      expect(await p("payments", 0.99)).toBeGreaterThan(700e6);
      expect(await p("payments", 0.99)).toBeLessThan(1_000e6);
      expect(await p("orders", 0.99)).toBeGreaterThan(350e6);
      expect(await p("orders", 0.99)).toBeLessThan(550e6);
      expect(await p("inventory", 0.5)).toBeGreaterThan(10e6);
      expect(await p("inventory", 0.5)).toBeLessThan(30e6);
    });

    it("makes legacy-api fail a few percent of requests", async () => {
      const { total, errors } = await queries.counts({ service: "legacy-api", ...window });
      expect(errors / total).toBeGreaterThan(0.01);
      expect(errors / total).toBeLessThan(0.08);
    });

    it("has slow payments traces (> 500 ms) in the last hour", async () => {
      const slow = await queries.slowTraces({ service: "payments", minDurationNs: 500e6, sinceMs: NOW - HOUR, untilMs: NOW, limit: 3 });
      expect(slow.totalCount).toBeGreaterThan(0n);
    });

    it("fans traces out from frontend through orders to payments and inventory", async () => {
      const conn = await store.connect();
      const r = await conn.runAndReadAll(`
        SELECT DISTINCT p.service_name || ' -> ' || c.service_name AS edge
        FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
        WHERE c.kind = 'SERVER' AND p.kind = 'CLIENT' ORDER BY edge`);
      conn.closeSync();
      expect(r.getRowsJS().map((row) => row[0])).toEqual(
        expect.arrayContaining(["frontend -> orders", "orders -> payments", "orders -> inventory", "frontend -> auth"]),
      );
    });

    it("reports system metrics for every service", async () => {
      for (const service of result.services) {
        const m = await queries.systemMetrics({ service, sinceMs: NOW - HOUR, untilMs: NOW });
        expect(m.sampleCount, service).toBeGreaterThan(0);
        expect(m.cpuPercent, service).toBeGreaterThan(0);
        expect(m.memoryPercent, service).toBeGreaterThan(0);
      }
    });

    it("registers services with namespaces, regions and several instances", async () => {
      const services = await queries.listServices({});
      expect(services.map((s) => s.name)).toEqual([...result.services].sort());
      expect(services.find((s) => s.name === "payments")).toMatchObject({ namespace: "shop", instanceCount: 3 });
      expect(services.every((s) => s.instanceCount >= 2 && s.region.length > 0)).toBe(true);
    });
  });
});

/** Every span the seed writes, in order, kept in memory (no store). */
async function seedWrites(o: Parameters<typeof seedDemo>[1]): Promise<SpanRecord[]> {
  const spans: SpanRecord[] = [];
  const writer = {
    writeResources: async () => {},
    writeSpans: async (batch: readonly SpanRecord[]) => void spans.push(...batch),
    writeHostSamples: async () => {},
  } as Partial<WriteStore> as WriteStore;
  await seedDemo(writer, o);
  return spans;
}

/** What the seed writes, kept in memory: the instances it registers and those its spans' resources name. */
async function seedInstances(o: Parameters<typeof seedDemo>[1]) {
  const registered = new Map<string, Set<string>>();
  const inSpans = new Map<string, Set<string>>();
  const add = (m: Map<string, Set<string>>, service: string, id: string) => (m.get(service) ?? m.set(service, new Set()).get(service)!).add(id);
  const writer = {
    writeResources: async (rs: ResourceRecord[]) => rs.forEach((r) => add(registered, r.serviceName, r.instanceId)),
    writeSpans: async (spans: readonly SpanRecord[]) => spans.forEach((s) => add(inSpans, s.serviceName, instanceOf(s))),
    writeHostSamples: async () => {},
  } as Partial<WriteStore> as WriteStore;
  await seedDemo(writer, o);
  return { registered, inSpans };
}

/** A span's service.instance.id: its resource's, which the span's own attribute must repeat. */
function instanceOf(s: SpanRecord): string {
  const rows = s.resourceRows ?? [];
  const i = rows.findIndex((v, k) => k % 2 === 0 && v === "service.instance.id");
  const id = rows[i + 1]!;
  if (s.kind === "SERVER") expect((s.attributes as Record<string, unknown>)["service.instance.id"]).toBe(id);
  return id;
}

describe("demo instances", () => {
  // `coral demo load` into a seeded colony registers the instances its spans' resources name: were
  // they not the seed's, every service would count its instances twice.
  it("the seed registers exactly the instances its spans come from, as live `demo load` traffic names them", async () => {
    const { registered, inSpans } = await seedInstances({ nowMs: NOW, hours: 0.25 });
    expect(registered).toEqual(inSpans);
    expect(registered.get("payments")?.size).toBe(3);
    const loaded = new DemoTraffic(7);
    const live = new Map<string, Set<string>>();
    for (let i = 0; i < 2_000; i++) for (const s of loaded.trace(NOW + i)) (live.get(s.serviceName) ?? live.set(s.serviceName, new Set()).get(s.serviceName)!).add(instanceOf(s));
    expect(live).toEqual(registered);
  });

  it("with a staged incident, the staged service's instances are the staging's pods", async () => {
    const { registered, inSpans } = await seedInstances({ nowMs: NOW, hours: 0.5, incident: { kind: "pod", minutes: 30 } });
    expect(registered).toEqual(inSpans);
    expect(registered.get(INCIDENT_SERVICE)?.size).toBe(6);
  });
});

describe("seedDemo at any time of day", () => {
  // End-to-end tests seed at the real clock, so the shape they quote must hold whatever the hour
  // (the daily swing changes the traffic, the start minute changes every random draw).
  const starts = [0, 1, 2, 3].map((k) => NOW + k * (5 * HOUR + 17 * 60_000 + 13_000));
  it.each(starts)("keeps the shape the examples rely on, seeded at %i", async (nowMs) => {
    const { store } = await seeded(`day-${nowMs}`, { nowMs, hours: 1 });
    try {
      const queries = new Queries(store);
      const window = { sinceMs: nowMs - HOUR, untilMs: nowMs };
      const p99 = (service: string) => queries.percentile({ service, metric: HTTP_SERVER_DURATION, q: 0.99, ...window }).then((r) => r.value);
      expect(await p99("legacy-api")).toBeGreaterThan(500e6);
      expect(await p99("payments")).toBeGreaterThan(100e6);
      expect(await p99("auth")).toBeLessThan(500e6);
      const legacy = await queries.counts({ service: "legacy-api", ...window });
      expect(legacy.errors / legacy.total).toBeGreaterThan(0.01);
      const slow = await queries.slowTraces({ service: "payments", minDurationNs: 500e6, ...window, limit: 1 });
      expect(slow.totalCount).toBeGreaterThan(0n);
    } finally {
      await store.close();
    }
  });
});

describe("live demo traffic", () => {
  it("keeps recent windows filled after the seed, at the demo's rate", async () => {
    const { store } = await seeded("live", { nowMs: NOW, hours: 1 });
    const writer = new Writer(store);
    const live = new LiveDemo(writer, NOW);
    // Ten minutes of ticks, five seconds apart, as `coral colony start --demo` does while it runs.
    let spans = 0;
    for (let t = NOW + 5_000; t <= NOW + 10 * 60_000; t += 5_000) spans += await live.tick(t);
    await writer.close();
    const q = new Queries(store);
    const recent = await q.counts({ service: "payments", sinceMs: NOW + 5 * 60_000, untilMs: NOW + 10 * 60_000 });
    const seededHour = await q.counts({ service: "payments", sinceMs: NOW - HOUR, untilMs: NOW });
    expect(spans).toBeGreaterThan(0);
    expect(recent.total).toBeGreaterThan(0);
    // Five minutes of live traffic is roughly a twelfth of the seeded hour (±50% for the swing).
    expect(recent.total).toBeGreaterThan(seededHour.total / 24);
    expect(recent.total).toBeLessThan(seededHour.total / 6);
    const sys = await q.systemMetrics({ service: "payments", sinceMs: NOW + 5 * 60_000, untilMs: NOW + 10 * 60_000 });
    expect(sys.sampleCount).toBeGreaterThan(0);
    expect(timestampMs((await q.getService("payments"))!.lastSeen)).toBe(NOW + 10 * 60_000);
    await store.close();
  });
});
