import type { Kysely } from "kysely";
import type { Database } from "../store/schema.js";

/**
 * Cumulative histograms (OpenTelemetry SDKs' default temporality) report totals since the stream
 * started; the colony stores per-minute increments. The increment of a point is its totals minus
 * those of the stream's last *stored* point, so the last point of every stream is kept in
 * `histogram_streams` and replaced in the same transaction as the increment it produced: a retried
 * request, a request refused under back-pressure, or a colony restart never counts a total twice.
 */

/** A point of a cumulative stream: totals since `startNs`, in sketch buckets. */
export interface StreamPoint {
  startNs: bigint;
  sumNs: number;
  buckets: Map<number, number>;
}

export interface Increment {
  count: number;
  sumNs: number;
  buckets: Map<number, number>;
}

function total(buckets: Map<number, number>): number {
  let n = 0;
  for (const c of buckets.values()) n += c;
  return n;
}

/**
 * What `next` adds over `prev`; all of it when the stream restarted (new start, or totals went down).
 *
 * A bucket's total can go down while the stream's total goes up: the stored bucket of an open-ended
 * explicit bucket follows the point's min or max, an SDK may lower its exponential scale, and the
 * bucket migration of an old file re-placed stored totals by value (store/migrations.ts). Dropping such
 * negative differences would count observations twice; instead each is cancelled against the
 * nearest buckets that went up, so the increment's total is exact and counts that merely moved
 * are not counted again.
 */
export function increment(prev: StreamPoint | undefined, next: StreamPoint): Increment {
  const count = total(next.buckets);
  if (!prev || prev.startNs !== next.startNs || total(prev.buckets) > count) return { count, sumNs: next.sumNs, buckets: next.buckets };
  const buckets = new Map<number, number>();
  const down = new Map<number, number>();
  for (const [b, n] of next.buckets) {
    const d = n - (prev.buckets.get(b) ?? 0);
    if (d > 0) buckets.set(b, d);
    else if (d < 0) down.set(b, -d);
  }
  for (const [b, n] of prev.buckets) if (!next.buckets.has(b) && n > 0) down.set(b, n);
  // Went up in total (else it is a restart), so every decrease finds increases to cancel.
  for (const [b, n] of down) {
    let left = n;
    while (left > 0 && buckets.size > 0) {
      let nearest: number | undefined;
      for (const k of buckets.keys()) if (nearest === undefined || Math.abs(k - b) < Math.abs(nearest - b)) nearest = k;
      if (nearest === undefined) break;
      const take = Math.min(left, buckets.get(nearest)!);
      left -= take;
      if (take === buckets.get(nearest)) buckets.delete(nearest);
      else buckets.set(nearest, buckets.get(nearest)! - take);
    }
  }
  return { count: count - total(prev.buckets), sumNs: next.sumNs - prev.sumNs, buckets };
}

export async function loadStreams(db: Kysely<Database>): Promise<Map<string, StreamPoint>> {
  const rows = await db.selectFrom("histogram_streams").selectAll().execute();
  return new Map(
    rows.map((r) => [r.stream, { startNs: BigInt(r.start_ns), sumNs: r.sum_ns, buckets: new Map(JSON.parse(r.buckets) as [number, number][]) }]),
  );
}

/** Replaces the stored last point of each stream in `points` (inside the caller's transaction). */
export async function saveStreams(db: Kysely<Database>, points: Map<string, StreamPoint>, atMs: number): Promise<void> {
  if (points.size === 0) return;
  await db
    .insertInto("histogram_streams")
    .values(
      [...points].map(([stream, p]) => ({
        stream,
        start_ns: p.startNs.toString(),
        sum_ns: p.sumNs,
        buckets: JSON.stringify([...p.buckets]),
        updated_at: new Date(atMs),
      })),
    )
    .onConflict((oc) =>
      oc.column("stream").doUpdateSet((eb) => ({
        start_ns: eb.ref("excluded.start_ns"),
        sum_ns: eb.ref("excluded.sum_ns"),
        buckets: eb.ref("excluded.buckets"),
        updated_at: eb.ref("excluded.updated_at"),
      })),
    )
    .execute();
}
