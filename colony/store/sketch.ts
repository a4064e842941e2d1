// DDSketch-style log buckets. Bucket i holds values in (γ^(i-1), γ^i]; reporting 2γ^i/(γ+1) for it is
// within α of every value in the bucket, and bucket counts add up exactly across minutes, hosts or
// services, so any window's percentile costs one scan over a few hundred buckets.

export const ALPHA = 0.01;
export const GAMMA = (1 + ALPHA) / (1 - ALPHA);
const LN_GAMMA = Math.log(GAMMA);

/** Durations below 1 ns (clock skew, zero-length spans) share the 1 ns bucket rather than log(0). */
export function bucketIndex(valueNs: number): number {
  return Math.ceil(Math.log(Math.max(valueNs, 1)) / LN_GAMMA);
}

export function bucketValue(index: number): number {
  return (2 * Math.pow(GAMMA, index)) / (GAMMA + 1);
}

/**
 * The SQL form of {@link bucketIndex}, so rollups computed in DuckDB land in the same buckets the
 * TypeScript side reads back.
 */
export function bucketIndexSql(column: string): string {
  return `CAST(ceil(ln(greatest(${column}, 1)) / ${LN_GAMMA}) AS INTEGER)`;
}

/**
 * The q-quantile of the values counted in `buckets`, interpolated between the two nearest ranks the
 * way DuckDB's `quantile_cont` does, so it can be compared to the exact answer directly. 0 when empty.
 */
export function quantileFromBuckets(buckets: readonly { bucket: number; count: number }[], q: number): number {
  const sorted = [...buckets].filter((b) => b.count > 0).sort((a, b) => a.bucket - b.bucket);
  const n = sorted.reduce((sum, b) => sum + b.count, 0);
  if (n === 0) return 0;
  const rank = Math.min(Math.max(q, 0), 1) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  let loValue: number | undefined;
  let seen = 0;
  for (const b of sorted) {
    seen += b.count;
    // Ranks are 0-based: the bucket holding rank r is the first whose cumulative count exceeds r.
    if (loValue === undefined && seen > lo) loValue = bucketValue(b.bucket);
    if (seen > hi) {
      const hiValue = bucketValue(b.bucket);
      return loValue! + (hiValue - loValue!) * (rank - lo);
    }
  }
  return bucketValue(sorted[sorted.length - 1]!.bucket);
}
