// span_attributes (what group-by and explain read): rows from OTLP requests with resource
// attributes and hostile values, exactly as the spans' JSON and resources say; the start-up
// migration of an older file (data version 4) gives the rows the Writer gives and the same answers;
// retention takes the rows with their spans.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExportTraceServiceRequestSchema } from "../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { RESOURCE_LIMITS, type SpanRecord } from "../ingest/records.js";
import { decodeTraces } from "../ingest/otlp/traces.js";
import { Writer } from "../ingest/writer.js";
import { DATA_VERSION, upgradeData } from "./migrations.js";
import { Queries } from "./queries.js";
import { Store } from "./store.js";

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const WINDOW = { sinceMs: NOW - 3_600_000, untilMs: NOW };
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "coral-span-attributes-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const str = (value: string) => ({ value: { case: "stringValue" as const, value } });
const kv = (key: string, value: string) => ({ key, value: str(value) });
const hex = (n: number, bytes: number) => Buffer.from(n.toString(16).padStart(bytes * 2, "0"), "hex");

/** Values that have broken JSON paths, SQL and terminals before. */
const HOSTILE = ['say "hi"', "it's", "naïve ünïcödé 日本 🚀", "back\\slash", "a/b~c", "x".repeat(300), "", "line\nbreak"];

/** One OTLP request: `pods` resources of service "shop", `perPod` spans each; every 4th span of pod-1 is slow. */
function request(pods: number, perPod: number): Buffer {
  const start = BigInt(NOW - 10 * 60_000) * 1_000_000n;
  return Buffer.from(
    toBinary(
      ExportTraceServiceRequestSchema,
      create(ExportTraceServiceRequestSchema, {
        resourceSpans: Array.from({ length: pods }, (_, p) => ({
          resource: {
            attributes: [
              kv("service.name", "shop"),
              kv("k8s.pod.name", `shop-${p}`),
              kv("cloud.region", "eu-1"),
              // The span's own attribute of this key wins.
              kv("deployment.environment", "resource-says"),
              ...Array.from({ length: 100 }, (_, i) => kv(`res.extra.${String(i).padStart(3, "0")}`, "v")),
            ],
          },
          scopeSpans: [
            {
              spans: Array.from({ length: perPod }, (_, i) => {
                const n = p * perPod + i + 1;
                const slow = p === 1 && i % 4 === 0;
                return {
                  traceId: hex(n, 16),
                  spanId: hex(n, 8),
                  name: "GET /",
                  kind: 2,
                  startTimeUnixNano: start + BigInt(n) * 1_000_000n,
                  endTimeUnixNano: start + BigInt(n) * 1_000_000n + (slow ? 2_000_000_000n : 10_000_000n),
                  attributes: [
                    kv("hostile", HOSTILE[n % HOSTILE.length]!),
                    kv("deployment.environment", "span-says"),
                    { key: "retries", value: { value: { case: "intValue" as const, value: BigInt(n % 3) } } },
                    { key: "dropped", value: {} },
                    // 100 keys per span (sorted last: explain compares the 64 most frequent keys, ties by name).
                    ...Array.from({ length: 96 }, (_, k) => kv(`zk${k}`, `v${(n + k) % 5}`)),
                  ],
                };
              }),
            },
          ],
        })),
      }),
    ),
  );
}

async function withStore<T>(path: string, f: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.open(path);
  try {
    return await f(store);
  } finally {
    await store.close();
  }
}

async function writeSpans(store: Store, spans: SpanRecord[]): Promise<void> {
  const writer = new Writer(store);
  await writer.writeSpans(spans);
  await writer.close();
}

const rowsOf = (store: Store) =>
  sql<{ trace_id: string; key: string; value: string; resource: boolean }>`SELECT trace_id, key, value, resource FROM span_attributes ORDER BY trace_id, key`
    .execute(store.db)
    .then((r) => r.rows);

describe("span_attributes", () => {
  it("holds every span and resource attribute of an OTLP request, hostile values intact, the span's winning a shared key", async () => {
    const decoded = decodeTraces(request(3, 40), NOW);
    await withStore(":memory:", async (store) => {
      await writeSpans(store, decoded.spans);
      const rows = await rowsOf(store);
      const first = rows.filter((r) => r.trace_id === hex(1, 16).toString("hex"));
      const own = first.filter((r) => !r.resource);
      // 96 keys plus hostile, deployment.environment and retries; the null `dropped` has no row.
      expect(own).toHaveLength(99);
      expect(own.find((r) => r.key === "hostile")!.value).toBe(HOSTILE[1]);
      expect(own.find((r) => r.key === "retries")!.value).toBe("1");
      expect(first.filter((r) => r.key === "deployment.environment")).toEqual([expect.objectContaining({ value: "span-says", resource: false })]);
      // Resource attributes, bounded per resource (service.name is the span's service already).
      const fromResource = first.filter((r) => r.resource).map((r) => r.key);
      expect(fromResource).toContain("k8s.pod.name");
      expect(fromResource).not.toContain("service.name");
      expect(fromResource.length).toBeLessThanOrEqual(RESOURCE_LIMITS.maxKeys);
      // Every hostile value is stored and read back exactly.
      expect(new Set(rows.filter((r) => r.key === "hostile").map((r) => r.value))).toEqual(new Set(HOSTILE));
    });
  });

  it("group-by and explain see resource attributes and hostile values", async () => {
    const decoded = decodeTraces(request(3, 40), NOW);
    await withStore(":memory:", async (store) => {
      await writeSpans(store, decoded.spans);
      const q = new Queries(store);
      const pods = await q.attributeGroups({ service: "shop", key: "k8s.pod.name", limit: 10, ...WINDOW });
      expect(pods.groups.map((g) => [g.value, g.requestCount])).toEqual([["shop-0", 40n], ["shop-1", 40n], ["shop-2", 40n]]);
      const hostile = await q.attributeGroups({ service: "shop", key: "hostile", limit: 100, ...WINDOW });
      expect(new Set(hostile.groups.map((g) => g.value))).toEqual(new Set(HOSTILE));
      expect(hostile.requestCount).toBe(120n);
      const absent = await q.attributeGroups({ service: "shop", key: "dropped", limit: 10, ...WINDOW });
      expect(absent.groups.map((g) => [g.value, g.other, g.requestCount])).toEqual([[undefined, false, 120n]]);

      const e = await q.explain({ service: "shop", selection: { slowNs: 1e9 }, limit: 50, excludeKeys: [], ...WINDOW });
      expect(e).toMatchObject({ total: 120, selected: 10 });
      expect(e.rows[0]).toMatchObject({ key: "k8s.pod.name", value: "shop-1", selected: 10n, baseline: 30n, score: 1 - 30 / 110 });
      expect(e.keyCount).toBe(99 + RESOURCE_LIMITS.maxKeys - 1); // the span's deployment.environment hides the resource's
      const long = e.rows.find((r) => r.key === "hostile" && r.valueTruncated);
      if (long) expect(long.value).toBe("x".repeat(256));
    });
  });

  it("explain answers the same when a hash collision makes it match values by their text", async () => {
    await withStore(":memory:", async (store) => {
      await writeSpans(store, decodeTraces(request(3, 40), NOW).spans);
      const args = { service: "shop", selection: { slowNs: 1e9 }, limit: 50, excludeKeys: [] as string[], ...WINDOW };
      const hashed = await new Queries(store).explain(args);
      // A collision cannot be staged on purpose (64-bit hashes): the hash pass is told it saw one.
      const q = new Queries(store) as unknown as { explainCounts: (a: unknown, match: string) => Promise<{ mismatched: number }> };
      const real = q.explainCounts.bind(q);
      const matches: string[] = [];
      q.explainCounts = async (a, match) => {
        matches.push(match);
        const r = await real(a, match);
        return match === "hash" ? { ...r, mismatched: 1 } : r;
      };
      const byText = await (q as unknown as Queries).explain(args);
      expect(matches).toEqual(["hash", "text"]);
      expect(byText).toEqual(hashed);
      expect(hashed.rows.length).toBeGreaterThan(0);
    });
  });

  it("migrating a file from before span_attributes gives the Writer's rows and the same answers", async () => {
    const path = join(dir, "v2.duckdb");
    const spans: SpanRecord[] = decodeTraces(request(3, 40), NOW).spans.map(({ resourceRows: _r, attributeRows: _a, ...s }) => s);
    // Attributes written as objects, as JSON text, as text that is no object, and as no JSON at all.
    spans[0] = { ...spans[0]!, attributes: { n: 0.1 + 0.2, big: 2 ** 53, nested: { a: [1, "two", null], "q\"": true }, nul: null, "": "empty key" } };
    spans[1] = { ...spans[1]!, attributes: "[1,2]" };
    spans[2] = { ...spans[2]!, attributes: "{not json" };
    const answers = async (store: Store) => {
      const q = new Queries(store);
      return JSON.stringify(
        [
          await q.explain({ service: "shop", selection: { slowNs: 1e9 }, limit: 50, excludeKeys: [], ...WINDOW }),
          await q.attributeGroups({ service: "shop", key: "hostile", limit: 3, ...WINDOW }),
          await q.attributeGroups({ service: "shop", key: "nested", limit: 3, ...WINDOW }),
        ],
        (_, v: unknown) => (typeof v === "bigint" ? String(v) : v),
      ).replaceAll(/"exemplarTraceIds":\[[^\]]*\]/g, "");
    };
    const written = await withStore(path, async (store) => {
      await writeSpans(store, spans);
      const before = { rows: await rowsOf(store), answers: await answers(store) };
      // What a colony of data version 2 left: the spans, no span_attributes.
      await sql`DROP TABLE span_attributes`.execute(store.db);
      await sql`DELETE FROM schema_migrations`.execute(store.db);
      await sql`INSERT INTO schema_migrations VALUES (2, now())`.execute(store.db);
      return before;
    });
    expect(written.rows.length).toBeGreaterThan(117 * 99);
    await withStore(path, async (store) => {
      expect(await rowsOf(store)).toEqual(written.rows);
      expect(await answers(store)).toEqual(written.answers);
      const versions = await store.db.selectFrom("schema_migrations").select("version").orderBy("version").execute();
      expect(versions.map((v) => v.version).at(-1)).toBe(DATA_VERSION);
    });
  });

  it("the migration reads a duplicated key's first value, as json_extract_string does, and says how far it is in chunks", async () => {
    await withStore(":memory:", async (store) => {
      const base = decodeTraces(request(2, 30), NOW).spans.map(({ resourceRows: _r, attributeRows: _a, ...s }) => s);
      // JSON text as a client may have sent it: a key twice, keys that need escaping in a JSON path.
      base[0] = { ...base[0]!, attributes: '{"dup":"first","x":1,"dup":"second","a/b~c":"slash","":"empty","~1":"tilde"}' };
      // A NUL in a key and a value, nesting 2,000 deep; and a lone surrogate, which DuckDB's JSON
      // reader refuses as a whole (the span gets no rows, as any text that is no JSON object).
      const deep = "[".repeat(2_000) + "]".repeat(2_000);
      base[1] = { ...base[1]!, attributes: `{"n\\u0000ul":"a\\u0000b","deep":${deep}}` };
      base[2] = { ...base[2]!, attributes: '{"lone":"\\ud800","ok":"fine"}' };
      await writeSpans(store, base);
      const expected = await rowsOf(store);
      // As a file of data version 3 holds it: the spans, no span_attributes.
      await sql`DELETE FROM span_attributes`.execute(store.db);
      await sql`DELETE FROM schema_migrations`.execute(store.db);
      await sql`INSERT INTO schema_migrations VALUES (3, now())`.execute(store.db);
      const said: string[] = [];
      await upgradeData(store.db, false, { log: (line) => said.push(line), chunkSpans: 7 });
      const migrated = await rowsOf(store);
      const first = migrated.filter((r) => r.trace_id === base[0]!.traceId);
      expect(first.map((r) => [r.key, r.value])).toEqual([["", "empty"], ["a/b~c", "slash"], ["dup", "first"], ["x", "1"], ["~1", "tilde"]]);
      // One span per trace here.
      const odd = (i: number) => migrated.filter((r) => r.trace_id === base[i]!.traceId).map((r) => [r.key, r.value]);
      expect(odd(1)).toEqual([["deep", deep], ["n\u0000ul", "a\u0000b"]]);
      expect(odd(2)).toEqual([]);
      // Every other span as the Writer stored it.
      const hand = new Set([0, 1, 2].map((i) => base[i]!.traceId));
      const others = (rows: typeof migrated) => rows.filter((r) => !hand.has(r.trace_id));
      expect(others(migrated)).toEqual(others(expected));
      // 60 spans in chunks of 7: a start line, one per chunk but the last, and an end line.
      expect(said).toHaveLength(1 + 8 + 1);
      expect(said[0]).toMatch(/^indexing the attributes of 60 stored spans/);
      expect(said.slice(1, -1)).toEqual([11, 22, 33, 44, 56, 67, 78, 89].map((p) => `… ${p} % of the stored spans' attributes indexed`));
      const versions = await store.db.selectFrom("schema_migrations").select("version").execute();
      expect(versions.map((v) => v.version)).toContain(DATA_VERSION);
    });
  });

  it("retention deletes a span's rows with the span", async () => {
    await withStore(":memory:", async (store) => {
      const spans = decodeTraces(request(2, 10), NOW).spans;
      const writer = new Writer(store);
      await writer.writeSpans(spans);
      const cutoff = Math.round(spans[10]!.startTimeMs);
      await writer.deleteTracesBefore(cutoff);
      await writer.close();
      const left = await sql<{ n: number; oldest: Date }>`SELECT count(DISTINCT span_id) AS n, min(start_time) AS oldest FROM span_attributes`.execute(store.db);
      expect(Number(left.rows[0]!.n)).toBe(10);
      expect(left.rows[0]!.oldest.getTime()).toBeGreaterThanOrEqual(cutoff);
    });
  });
});
