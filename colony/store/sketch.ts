// Latency buckets: the OpenTelemetry base-2 exponential histogram mapping at scale 6. Bucket k holds
// the values in (2^(k/64), 2^((k+1)/64)] — OTLP exponential histograms of scale ≥ 6 therefore land
// in these buckets exactly (index >> (scale − 6)), and bucket counts add up exactly across minutes,
// hosts or services, so any window's percentile costs one scan over a few hundred buckets.

/** The OpenTelemetry exponential-histogram scale of the stored buckets. */
export const SCALE = 6;
const PER_OCTAVE = 2 ** SCALE;
/** Ratio of a bucket's upper to its lower bound: 2^(2^−6). */
export const BASE = 2 ** (1 / PER_OCTAVE);
/**
 * The largest relative error of {@link bucketValue} for any value of its bucket: (BASE − 1)/(BASE + 1),
 * 0.5415 %. It is reached at both ends of the bucket, which is what makes it the least possible.
 */
export const RELATIVE_ERROR = (BASE - 1) / (BASE + 1);

/**
 * Bucket edges as exact doubles. A boundary 2^(k/64) is irrational unless 64 divides k, so no double
 * equals it and "x > 2^(k/64)" is the same as "x ≥ the smallest double above it". That double is
 * 2^⌊k/64⌋ · EDGE_MANTISSA[k mod 64] / 2^52, where EDGE_MANTISSA[j] is the smallest integer N with
 * N^64 > 2^(j + 52·64), found here in exact integer arithmetic (j = 0 gives 2^52 + 1: a power of two
 * itself belongs to the bucket below, as in OpenTelemetry's mapping).
 */
export const EDGE_MANTISSA: readonly bigint[] = Array.from({ length: PER_OCTAVE }, (_, j) => {
  const target = 2n ** BigInt(j + 52 * PER_OCTAVE);
  let n = BigInt(Math.floor(2 ** (j / PER_OCTAVE) * 2 ** 52));
  while (n ** BigInt(PER_OCTAVE) > target) n--;
  while (n ** BigInt(PER_OCTAVE) <= target) n++;
  return n;
});
const EDGE_MANTISSA_F64 = EDGE_MANTISSA.map(Number);
const NEAR_EDGE = 1e-9;

/** The smallest double in bucket k. Exact: an integer below 2^53 scaled by a power of two. */
function lowestIn(k: number): number {
  const j = ((k % PER_OCTAVE) + PER_OCTAVE) % PER_OCTAVE;
  return EDGE_MANTISSA_F64[j]! * 2 ** (Math.floor(k / PER_OCTAVE) - 52);
}

/**
 * The bucket of a duration in ns: ceil(log2(v)·64) − 1, made exact. log2 can be off by an ulp, which
 * near an edge (and at every power of two) moves a value to the neighbouring bucket, and DuckDB's log2
 * need not round like V8's; the estimate is therefore checked against the exact edges on both sides.
 * Durations below 1 ns (clock skew, zero-length spans) share the bucket of 1 ns, −1.
 */
export function bucketIndex(valueNs: number): number {
  if (!(valueNs > 1)) return -1;
  const t = Math.log2(valueNs) * PER_OCTAVE;
  const k = Math.ceil(t) - 1;
  // t is off by far less than 1e-9 (values below 2^64): away from an integer, its ceil is right.
  if (Math.abs(t - Math.round(t)) > NEAR_EDGE) return k;
  if (valueNs >= lowestIn(k + 1)) return k + 1;
  if (valueNs < lowestIn(k)) return k - 1;
  return k;
}

/**
 * The value reported for bucket k: 2·lo·hi/(lo + hi) of its bounds, the one point whose relative
 * distance to both ends is the same, (BASE − 1)/(BASE + 1) = {@link RELATIVE_ERROR}. (The geometric
 * midpoint √(lo·hi) would be off by up to √BASE − 1 = 0.543 % at the upper end.)
 */
export function bucketValue(index: number): number {
  return (2 * Math.pow(2, (index + 1) / PER_OCTAVE)) / (BASE + 1);
}

/**
 * The SQL form of {@link bucketIndex} (DuckDB), the same arithmetic on the same doubles, so rollups
 * computed in DuckDB land in exactly the buckets the TypeScript side computes. `column` is cast to
 * DOUBLE first: every duration Coral stores came from a JS number, so that cast is exact.
 */
export function bucketIndexSql(column: string): string {
  const x = `greatest(CAST(${column} AS DOUBLE), 1.0)`;
  const t = `(log2(${x}) * ${PER_OCTAVE})`;
  const k = `(CAST(ceil(${t}) AS BIGINT) - 1)`;
  const mantissas = `[${EDGE_MANTISSA.join(", ")}]`;
  const lowestIn = (i: string) =>
    `(CAST(${mantissas}[((${i}) % ${PER_OCTAVE} + ${PER_OCTAVE}) % ${PER_OCTAVE} + 1] AS DOUBLE) * pow(2.0, floor((${i}) / ${PER_OCTAVE}) - 52))`;
  // As in bucketIndex, only values within 1e-9 of an edge (in units of log2(x)·64) pay for the exact
  // check: CASE evaluates that branch for those rows only.
  return `CAST(CASE WHEN abs(${t} - round(${t})) > ${NEAR_EDGE} THEN ${k}
    ELSE ${k} + CASE WHEN ${x} >= ${lowestIn(`${k} + 1`)} THEN 1 WHEN ${x} < ${lowestIn(k)} THEN -1 ELSE 0 END END AS INTEGER)`;
}

/**
 * The bucket at scale 6 that holds OpenTelemetry exponential bucket `index` of `scale` ≥ 6 in full:
 * buckets nest, so this is exact (the data model's downscaling). Values at or below 1 join bucket −1,
 * as in {@link bucketIndex}.
 */
export function downscaledIndex(index: number, scale: number): number {
  if (scale < SCALE) throw new RangeError(`scale ${scale} is coarser than ${SCALE}: its buckets do not nest in the stored ones`);
  // Floor division by 2^(scale − 6), for negative indexes too (an arithmetic shift, without 32-bit wrap).
  return Math.max(Math.floor(index / 2 ** (scale - SCALE)), -1);
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
