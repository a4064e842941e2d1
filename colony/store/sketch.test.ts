import { describe, expect, it } from "vitest";
import { DuckDBInstance } from "@duckdb/node-api";
import { BASE, EDGE_MANTISSA, RELATIVE_ERROR, SCALE, bucketIndex, bucketIndexSql, bucketValue, downscaledIndex, quantileFromBuckets } from "./sketch.js";

/** Deterministic lognormal samples (mulberry32 + Box–Muller) so failures reproduce. */
function lognormal(n: number, medianNs: number, sigma: number, seed: number): number[] {
  let a = seed;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, () => medianNs * Math.exp(sigma * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand())));
}

/** The same definition as DuckDB's quantile_cont: linear interpolation at rank q·(n−1). */
function exactQuantile(sorted: number[], q: number): number {
  const rank = q * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

function toBuckets(values: number[]): { bucket: number; count: number }[] {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(bucketIndex(v), (counts.get(bucketIndex(v)) ?? 0) + 1);
  return [...counts].map(([bucket, count]) => ({ bucket, count }));
}

/** The smallest double above 2^(k/64) — the lowest value of bucket k — from the exact mantissas. */
const lowestIn = (k: number) => Number(EDGE_MANTISSA[((k % 64) + 64) % 64]!) * 2 ** (Math.floor(k / 64) - 52);
/** The neighbouring doubles of a positive x, one ulp away (through its bits). */
const f64 = new Float64Array(1);
const bits = new BigUint64Array(f64.buffer);
const step = (x: number, by: bigint) => ((f64[0] = x), (bits[0]! += by), f64[0]!);
const below = (x: number) => step(x, -1n);
const above = (x: number) => step(x, 1n);

/** 0, sub-ns, 1 ns, every power of two, every bucket edge of the BIGINT range with its neighbours, and 2^63. */
function edgeCases(): number[] {
  const out = [0, 0.25, 0.999, 1, above(1), 2, 3, 1e9, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 62, 2 ** 63, 9_223_372_036_854_774_784];
  for (let k = 0; k < 64 * 63; k++) {
    const lo = lowestIn(k);
    out.push(lo, below(lo), above(lo));
  }
  for (let e = 0; e <= 63; e++) out.push(2 ** e, below(2 ** e), above(2 ** e));
  return out;
}

describe("latency buckets: OpenTelemetry exponential mapping at scale 6", () => {
  it("has 64 buckets per power of two and reports within 0.5415 % of any value", () => {
    expect(SCALE).toBe(6);
    expect(BASE).toBe(2 ** (1 / 64));
    expect(RELATIVE_ERROR).toBeCloseTo(0.0054152, 7);
  });

  it("derives each edge mantissa as the smallest integer N with N^64 > 2^(j + 52·64)", () => {
    expect(EDGE_MANTISSA).toHaveLength(64);
    expect(EDGE_MANTISSA[0]).toBe(2n ** 52n + 1n);
    EDGE_MANTISSA.forEach((n, j) => {
      const target = 2n ** BigInt(j + 52 * 64);
      expect(n ** 64n > target && (n - 1n) ** 64n <= target, `mantissa ${j}`).toBe(true);
    });
  });

  it("follows index = ceil(log2(v)·64) − 1: an exact power of two ends the bucket below it", () => {
    for (let e = 0; e <= 63; e++) {
      expect(bucketIndex(2 ** e), `2^${e}`).toBe(64 * e - 1);
      expect(bucketIndex(above(2 ** e)), `just above 2^${e}`).toBe(64 * e);
    }
  });

  it("puts every edge's lowest value in its bucket and the double below it in the bucket before", () => {
    for (let k = 0; k < 64 * 63; k++) {
      expect(bucketIndex(lowestIn(k))).toBe(k);
      expect(bucketIndex(below(lowestIn(k)))).toBe(k - 1);
    }
  });

  it("puts 0, sub-nanosecond and 1 ns values in bucket −1", () => {
    for (const v of [0, -5, 0.25, 0.999, 1, Number.NaN]) expect(bucketIndex(v), String(v)).toBe(-1);
    expect(bucketIndex(above(1))).toBe(0);
  });

  it("answers in SQL exactly as in TypeScript, at every edge and power of two of the BIGINT range", async () => {
    const instance = await DuckDBInstance.create(":memory:");
    const conn = await instance.connect();
    try {
      const values = edgeCases();
      await conn.run("CREATE TABLE v (i INTEGER, d DOUBLE)");
      const app = await conn.createAppender("v");
      values.forEach((d, i) => {
        app.appendInteger(i);
        app.appendDouble(d);
        app.endRow();
      });
      app.closeSync();
      const rows = (await conn.runAndReadAll(`SELECT i, ${bucketIndexSql("d")} FROM v ORDER BY i`)).getRowsJS();
      const differ = rows.filter(([i, k]) => bucketIndex(values[i as number]!) !== k).map(([i, k]) => [values[i as number], k, bucketIndex(values[i as number]!)]);
      expect(differ).toEqual([]);
      expect(rows).toHaveLength(values.length);
      // Stored durations are BIGINT: the cast to DOUBLE on the way in must not move them either.
      const big = (await conn.runAndReadAll(`SELECT ${bucketIndexSql("CAST(9223372036854774784 AS BIGINT)")}, ${bucketIndexSql("CAST(0 AS BIGINT)")}`)).getRowsJS();
      expect(big).toEqual([[bucketIndex(9_223_372_036_854_774_784), -1]]);
    } finally {
      conn.closeSync();
      instance.closeSync();
    }
  });

  it("reports every value within RELATIVE_ERROR, and the bound is reached at a bucket's ends", () => {
    let worst = 0;
    for (const v of [above(1), 2, 999, 1_000_000, 123_456_789, 5e9, 3.6e12, 2 ** 62, ...edgeCases().filter((x) => x > 1)]) {
      const err = Math.abs(bucketValue(bucketIndex(v)) - v) / v;
      expect(err, String(v)).toBeLessThanOrEqual(RELATIVE_ERROR * (1 + 1e-9));
      worst = Math.max(worst, err);
    }
    expect(worst).toBeGreaterThan(RELATIVE_ERROR * (1 - 1e-6));
  });

  it("downscales an OpenTelemetry bucket of scale 6…20 to the scale-6 bucket holding all of it", () => {
    for (let scale = SCALE; scale <= 20; scale++) {
      const per = 2 ** scale;
      for (const i of [-1, 0, 1, 63, 64, per - 1, per, 3 * per + 17, 40 * per - 1, 40 * per, 61 * per + per / 2]) {
        const target = downscaledIndex(i, scale);
        for (const f of [0.001, 0.5, 0.999]) {
          const v = 2 ** ((i + f) / per);
          expect(bucketIndex(v), `scale ${scale}, index ${i}, at ${f}`).toBe(target);
        }
      }
    }
    expect(downscaledIndex(-1000, 8)).toBe(-1);
    expect(() => downscaledIndex(3, 5)).toThrow(/coarser/);
  });

  it.each([
    ["fast service", 20e6, 0.6, 1],
    ["heavy tail", 150e6, 0.9, 2],
    ["very wide", 5e6, 1.8, 3],
  ])("stays within RELATIVE_ERROR of exact quantiles on lognormal samples: %s", (_name, median, sigma, seed) => {
    const values = lognormal(200_000, median, sigma, seed);
    const sorted = [...values].sort((a, b) => a - b);
    const buckets = toBuckets(values);
    for (const q of [0.5, 0.9, 0.99, 0.999]) {
      const exact = exactQuantile(sorted, q);
      expect(Math.abs(quantileFromBuckets(buckets, q) - exact) / exact).toBeLessThanOrEqual(RELATIVE_ERROR);
    }
  });

  it("merges exactly: buckets of parts answer like buckets of the whole", () => {
    const a = lognormal(10_000, 10e6, 0.5, 7);
    const b = lognormal(10_000, 300e6, 0.5, 8);
    const merged = [...toBuckets(a), ...toBuckets(b)];
    expect(quantileFromBuckets(merged, 0.99)).toBe(quantileFromBuckets(toBuckets([...a, ...b]), 0.99));
  });

  it("answers 0 for no data and the lone bucket for one value", () => {
    expect(quantileFromBuckets([], 0.99)).toBe(0);
    expect(quantileFromBuckets([{ bucket: 100, count: 0 }], 0.5)).toBe(0);
    expect(quantileFromBuckets([{ bucket: 100, count: 1 }], 0.99)).toBe(bucketValue(100));
    expect(quantileFromBuckets([{ bucket: 100, count: 3 }, { bucket: 5, count: 1 }], 0)).toBe(bucketValue(5));
    expect(quantileFromBuckets([{ bucket: 100, count: 3 }, { bucket: 5, count: 1 }], 1)).toBe(bucketValue(100));
  });
});
