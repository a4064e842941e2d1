// Accuracy of `explain` on staged incidents: for each kind of cause, demo shops seeded with
// different seeds (a different culprit value, effect and strength each), written through the real
// Writer into DuckDB and ranked by the store's explain. The staged cause must come first in at
// least 95 % of them; the table of hits is printed so runs can be compared.
import { afterAll, describe, expect, it } from "vitest";
import type { SpanRecord } from "../ingest/records.js";
import { Writer } from "../ingest/writer.js";
import type { WriteStore } from "../store/engine.js";
import { Queries } from "../store/queries.js";
import { Store } from "../store/store.js";
import { DemoTraffic, seedDemo } from "./demo.js";
import { INCIDENT_KEYS, INCIDENT_KINDS, INCIDENT_SERVICE, incidentValues, parseIncident, type IncidentKind, type IncidentPlan } from "./incidents.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const MINUTE = 60_000;
const SEEDS_PER_KIND = 10;
/** The slow selection: the staged slowness adds ~1.5 s; the shop's own tail rarely reaches 1 s. */
const SLOW_NS = 1_000_000_000;
/** Excluded for --errors by the explain handler too: they restate the selection. */
const STATUS_KEYS = ["http.status_code", "http.response.status_code"];

async function stagedExplain(kind: IncidentKind, seed: number) {
  const store = await Store.open(":memory:");
  try {
    const writer = new Writer(store);
    // Explain reads the staged service's SERVER spans only: the shop's other spans and its host
    // metrics are drawn (the draws stay as the demo makes them) but not stored, and what is kept
    // goes in one commit — a seed several times faster.
    const explained: SpanRecord[] = [];
    const seeded = await seedDemo(
      {
        ...unused,
        writeSpans: async (spans) => void explained.push(...spans.filter((s) => s.serviceName === INCIDENT_SERVICE && s.kind === "SERVER")),
        writeHostSamples: () => Promise.resolve(),
        writeResources: (resources) => writer.writeResources(resources),
      } satisfies WriteStore,
      { nowMs: NOW, hours: 0.5, seed, incident: { kind, minutes: 30 } },
    );
    expect(seeded.incident!.service).toBe(INCIDENT_SERVICE);
    await writer.writeSpans(explained);
    await writer.close();
    const plan = seeded.incident!;
    const e = await new Queries(store).explain({
      service: plan.service,
      selection: plan.effect === "slow" ? { slowNs: SLOW_NS } : { errors: true },
      excludeKeys: plan.effect === "slow" ? [] : STATUS_KEYS,
      limit: 10,
      sinceMs: NOW - 30 * MINUTE,
      untilMs: NOW,
    });
    return { plan, e };
  } finally {
    await store.close();
  }
}

/** What the seed does not call: a call fails the test, so a seed that starts to is noticed. */
const unused: Omit<WriteStore, "writeSpans" | "writeHostSamples" | "writeResources"> = Object.fromEntries(
  ["prepareSpans", "writePrepared", "writeMetrics", "writeLatency", "deleteTracesBefore", "settle", "pendingMinutes", "recover", "close"].map((m) => [
    m,
    () => {
      throw new Error(`the demo seed called ${m}: store it in incidents.test.ts's writer too`);
    },
  ]),
) as never;

const table: { kind: IncidentKind; hits: number; runs: number; misses: string[] }[] = [];

afterAll(() => {
  const lines = table.map((t) => `${t.kind.padEnd(8)} ${String(t.hits).padStart(3)} / ${t.runs}${t.misses.length ? `  missed: ${t.misses.join("; ")}` : ""}`);
  const hits = table.reduce((n, t) => n + t.hits, 0);
  const runs = table.reduce((n, t) => n + t.runs, 0);
  console.log(`staged cause ranked first (kind × hits):\n${lines.join("\n")}\ntotal    ${hits} / ${runs}`);
});

describe("explain on staged incidents", () => {
  for (const kind of INCIDENT_KINDS) {
    it(`ranks the staged ${kind} first`, { timeout: 300_000 }, async () => {
      const row = { kind, hits: 0, runs: 0, misses: [] as string[] };
      table.push(row);
      for (let seed = 1; seed <= SEEDS_PER_KIND; seed++) {
        const { plan, e } = await stagedExplain(kind, seed * 7919 + kind.length);
        expect(plan.key).toBe(INCIDENT_KEYS[kind]);
        expect(incidentValues(kind)).toContain(plan.value);
        row.runs++;
        const top = e.rows[0];
        if (top?.key === plan.key && top.value === plan.value) row.hits++;
        else row.misses.push(describeMiss(plan, top));
      }
      expect(row.runs).toBe(SEEDS_PER_KIND);
    });
  }

  it("ranks the staged cause first in at least 95 % of all incidents", () => {
    const hits = table.reduce((n, t) => n + t.hits, 0);
    const runs = table.reduce((n, t) => n + t.runs, 0);
    expect(runs).toBeGreaterThanOrEqual(50);
    expect(hits / runs).toBeGreaterThanOrEqual(0.95);
  });
});

function describeMiss(plan: IncidentPlan, top: { key: string; value: string } | undefined): string {
  return `${plan.effect} ${plan.key}=${plan.value} (share ${plan.share.toFixed(2)}) → ${top ? `${top.key}=${top.value}` : "nothing"}`;
}

describe("live staged traffic (coral demo load --incident)", () => {
  it("decorates every payments request and fails the culprit's far more often than the rest", () => {
    const traffic = new DemoTraffic(7, parseIncident("route:errors"));
    const plan = traffic.incident!;
    expect(plan).toMatchObject({ key: "http.route", effect: "errors" });
    const by = new Map<boolean, { n: number; failed: number }>([[true, { n: 0, failed: 0 }], [false, { n: 0, failed: 0 }]]);
    for (let i = 0; i < 20_000; i++) {
      for (const s of traffic.trace(NOW + i)) {
        if (s.serviceName !== "payments" || s.kind !== "SERVER") continue;
        const a = s.attributes as Record<string, unknown>;
        // The pod and its release come as the pod's resource attributes, the rest on the span.
        const resource = Object.fromEntries(Array.from({ length: (s.resourceRows?.length ?? 0) / 2 }, (_, i) => [s.resourceRows![2 * i], s.resourceRows![2 * i + 1]]));
        // As `coral demo load` sends the pod's resource (its namespace, region and instance too).
        expect(Object.keys(resource).sort()).toEqual(["cloud.region", "k8s.pod.name", "service.instance.id", "service.namespace", "service.version"]);
        for (const key of Object.values(INCIDENT_KEYS)) expect(typeof (a[key] ?? resource[key]), key).toBe("string");
        for (const key of ["k8s.pod.name", "service.version"]) expect(a, key).not.toHaveProperty(key);
        const g = by.get(a["http.route"] === plan.value)!;
        g.n++;
        if (s.statusCode === "ERROR") g.failed++;
      }
    }
    const culprit = by.get(true)!;
    const rest = by.get(false)!;
    expect(culprit.n).toBeGreaterThan(50);
    expect(culprit.failed / culprit.n).toBeGreaterThan(0.2);
    expect(rest.failed / rest.n).toBeLessThan(0.05);
  });

  it("reads KIND and KIND:EFFECT, and refuses anything else naming the choices", () => {
    expect(parseIncident("tier")).toEqual({ kind: "tier" });
    expect(parseIncident("pod:slow")).toEqual({ kind: "pod", effect: "slow" });
    expect(() => parseIncident("pod:fast")).toThrow(/use :slow or :errors/);
    expect(() => parseIncident("x".repeat(10_000))).toThrow(/use one of pod, region, route, version, tier/);
  });
});

