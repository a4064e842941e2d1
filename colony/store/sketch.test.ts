import { describe, expect, it } from "vitest";
import { ALPHA, GAMMA, bucketIndex, bucketValue, quantileFromBuckets } from "./sketch.js";

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

describe("log-bucket sketch", () => {
  it("uses γ = (1+α)/(1−α) with α = 1%", () => {
    expect(ALPHA).toBe(0.01);
    expect(GAMMA).toBeCloseTo(1.0202020202, 9);
  });

  it("represents every value within α of itself", () => {
    for (const v of [1, 2, 999, 1_000_000, 123_456_789, 5e9, 3.6e12]) {
      const rep = bucketValue(bucketIndex(v));
      expect(Math.abs(rep - v) / v).toBeLessThanOrEqual(ALPHA + 1e-12);
    }
  });

  it("puts a bucket's upper bound in that bucket and anything above in the next", () => {
    const i = bucketIndex(1_000_000);
    expect(bucketIndex(Math.pow(GAMMA, i) * (1 - 1e-9))).toBe(i);
    expect(bucketIndex(Math.pow(GAMMA, i) * (1 + 1e-9))).toBe(i + 1);
  });

  it.each([
    ["fast service", 20e6, 0.6, 1],
    ["heavy tail", 150e6, 0.9, 2],
    ["very wide", 5e6, 1.8, 3],
  ])("stays within 1 percent of exact quantiles on lognormal samples: %s", (_name, median, sigma, seed) => {
    const values = lognormal(200_000, median, sigma, seed);
    const sorted = [...values].sort((a, b) => a - b);
    const buckets = toBuckets(values);
    for (const q of [0.5, 0.9, 0.99, 0.999]) {
      const exact = exactQuantile(sorted, q);
      expect(Math.abs(quantileFromBuckets(buckets, q) - exact) / exact).toBeLessThanOrEqual(ALPHA);
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
