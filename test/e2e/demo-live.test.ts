// `coral colony start --demo` keeps the demo traffic flowing after the seed; --demo-static does not.
import { afterAll, expect, it } from "vitest";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const started: SpawnedColony[] = [];
afterAll(async () => {
  await Promise.all(started.map((c) => c.stop()));
});

async function spanCount(c: SpawnedColony): Promise<number> {
  const r = await runCoral(["query", "sql", "SELECT count(*) AS n FROM spans", "--colony", c.addr, "-o", "json"]);
  return JSON.parse(r.stdout).rows[0].n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("--demo adds live traffic while the colony runs; --demo-static keeps the seed as it is", { timeout: 90_000 }, async () => {
  const live = await spawnColony({ demo: true, liveDemo: true });
  const fixed = await spawnColony({ demo: true });
  started.push(live, fixed);
  const before = [await spanCount(live), await spanCount(fixed)];
  // The live demo ticks every 5 s: poll until a tick has landed (bounded, for a loaded machine).
  let after = before[0]!;
  for (let waited = 0; after === before[0] && waited < 30_000; waited += 1_000) {
    await sleep(1_000);
    after = await spanCount(live);
  }
  expect(after).toBeGreaterThan(before[0]!);
  expect(await spanCount(fixed)).toBe(before[1]);
});
