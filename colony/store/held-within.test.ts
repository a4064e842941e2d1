import { describe, expect, it } from "vitest";
import { heldWithin, SqlRejected } from "./deadline.js";

const LIMITS = { timeoutMs: 100, abandonAfterMs: 50 };
const WORDS = { timeout: "statement timeout" };

/** Endless batches; `ended` says whether its finally ran (what gives a query's slot back). */
function source() {
  const state = { ended: false, produced: 0 };
  async function* batches(): AsyncGenerator<number> {
    try {
      for (;;) yield state.produced++;
    } finally {
      state.ended = true;
    }
  }
  return { state, batches: batches() };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("heldWithin: a stream's deadline runs while its consumer holds a batch", () => {
  it("a consumer that stops pulling: the source is ended once the query would be abandoned, without another pull", async () => {
    const { state, batches } = source();
    const held = heldWithin(batches, LIMITS, WORDS);
    expect((await held.next()).value).toBe(0);
    await sleep(LIMITS.timeoutMs + LIMITS.abandonAfterMs + 50);
    expect(state.ended).toBe(true);
    expect(state.produced).toBe(1);
    const err = await held.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SqlRejected);
    expect((err as SqlRejected).code).toBe("deadline_exceeded");
    expect((err as SqlRejected).message).toMatch(/not read within the 100 ms statement timeout/);
  });

  it("a consumer that keeps pulling gets every batch, and returning early ends the source at once", async () => {
    const { state, batches } = source();
    const held = heldWithin(batches, LIMITS, WORDS);
    for (let i = 0; i < 1000; i++) expect((await held.next()).value).toBe(i);
    await held.return(undefined);
    expect(state.ended).toBe(true);
  });

  it("a source that ends before the deadline is passed through whole", async () => {
    async function* three(): AsyncGenerator<number> {
      yield* [1, 2, 3];
    }
    const got: number[] = [];
    for await (const v of heldWithin(three(), LIMITS, WORDS)) got.push(v);
    expect(got).toEqual([1, 2, 3]);
  });
});
