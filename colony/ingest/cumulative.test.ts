import { describe, expect, it } from "vitest";
import { increment } from "./cumulative.js";

const point = (buckets: [number, number][], startNs = 1n, sumNs = 0) => ({ startNs, sumNs, buckets: new Map(buckets) });
const total = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe("increment of a cumulative histogram stream", () => {
  it("is the per-bucket difference when no bucket went down", () => {
    const inc = increment(point([[1, 2], [5, 3]], 1n, 10), point([[1, 4], [5, 3], [9, 1]], 1n, 25));
    expect(inc).toEqual({ count: 3, sumNs: 15, buckets: new Map([[1, 2], [9, 1]]) });
  });

  it("is all of the point after a restart (new start, or totals that went down)", () => {
    const next = point([[1, 1]], 2n);
    expect(increment(point([[1, 5]]), next).buckets).toBe(next.buckets);
    expect(increment(point([[1, 5]], 2n), next).count).toBe(1);
  });

  it("counts exactly when counts moved between buckets (an open-ended bucket following max, a lower scale, a migration)", () => {
    // 5 observations moved from bucket 10 to bucket 12, and 2 new ones arrived in bucket 3.
    const inc = increment(point([[3, 1], [10, 5]]), point([[3, 3], [12, 5]]));
    expect(inc.count).toBe(2);
    expect(total(inc.buckets)).toBe(2);
    expect(inc.buckets).toEqual(new Map([[3, 2]]));
    // Moved down instead, one new observation somewhere: the count is exact, the place is a neighbour.
    const down = increment(point([[10, 5]]), point([[8, 5], [10, 1]]));
    expect(down.count).toBe(1);
    expect(down.buckets).toEqual(new Map([[8, 1]]));
  });
});
