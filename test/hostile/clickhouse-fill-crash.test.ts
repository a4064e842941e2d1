// The span_attributes fill of a ClickHouse upgrade (colony/store/clickhouse/schema.ts) under kill -9:
// a real colony process on `--store chdb:DIR` holding a database of the first schema is killed at
// random moments of its start or as the fill's parts appear (mid-INSERT too), again and again. After every kill span_attributes holds no row
// twice (and all of them once the version says 2); the start that is let finish leaves exactly the
// rows today's writer stores for the same spans. The kill points come from a seed printed at the
// start: CORAL_CRASH_SEED=N npx vitest run test/hostile/clickhouse-fill-crash.test.ts.
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { expect, test } from "vitest";
import { SCHEMA_VERSION } from "../../colony/store/clickhouse/schema.js";
import { killIntoStart, seededRandom, snapshotCli, startKillableColony, type KillableColony } from "../helpers/crash.js";

const SEED = process.env.CORAL_CRASH_SEED ? Number(process.env.CORAL_CRASH_SEED) : Math.floor(Math.random() * 2 ** 31);
const EPISODES = 3;
const MAX_KILLS_PER_EPISODE = 3;

interface Held {
  version: number;
  /** null: no span_attributes table (the first schema). */
  attributes: { rows: string; distinct: string; digest: string } | null;
}

/** The fixture in a process of its own (chdb binds one directory per process). */
async function fixture(mode: "legacy" | "fresh" | "peek", dir: string): Promise<Held> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/hostile/clickhouse-fill-fixture.ts", mode, dir], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as Held;
}

/** A killed colony's directory as the next start will find it, read through a copy. */
async function peek(dir: string): Promise<Held> {
  const copy = `${dir}-peek`;
  rmSync(copy, { recursive: true, force: true });
  cpSync(dir, copy, { recursive: true });
  try {
    return await fixture("peek", copy);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/**
 * Kills `c` when the `n`-th new entry appears in a table's directory: a part being written
 * (`tmp_insert_…`, so the kill can land mid-INSERT) or committed, or a merge's. Polled every 2 ms.
 * Resolves false if the colony became ready (or exited) first.
 */
async function killAtNewPart(c: KillableColony, tableDir: string, n: number): Promise<boolean> {
  const list = () => {
    try {
      return readdirSync(tableDir);
    } catch {
      return [];
    }
  };
  const seen = new Set(list());
  let fresh = 0;
  let ready = false;
  c.ready.then(() => (ready = true), () => {});
  for (;;) {
    if (ready || c.proc.exitCode !== null) {
      await c.kill();
      return false;
    }
    for (const name of list()) {
      if (!seen.has(name)) {
        seen.add(name);
        fresh++;
      }
    }
    if (fresh >= n) {
      await c.kill();
      return true;
    }
    await sleep(2);
  }
}

test(
  "kill -9 during the span_attributes fill of a ClickHouse upgrade: no row twice after any kill, the writer's rows once it finishes",
  async () => {
    console.log(`clickhouse fill crash test seed ${SEED} — replay with CORAL_CRASH_SEED=${SEED}`);
    const random = seededRandom(SEED);
    const dir = mkdtempSync(join(tmpdir(), "coral-fill-crash-"));
    const cli = await snapshotCli();
    try {
      const legacy = join(dir, "legacy");
      const [old, fresh] = await Promise.all([fixture("legacy", legacy), fixture("fresh", join(dir, "fresh"))]);
      expect(old).toEqual({ version: 1, attributes: null });
      const want = fresh.attributes!;
      expect(Number(want.rows)).toBeGreaterThan(15_000);
      expect(want.distinct).toBe(want.rows);

      const store = join(dir, "store");
      const start = () => startKillableColony(cli.bin, store, ["--store", `chdb:${store}`, "--retention", "0"]);
      // How long a start takes on the old database: the window the kills land in.
      cpSync(legacy, store, { recursive: true });
      const timed = start();
      const startMs = (await timed.ready).readyMs;
      await timed.kill();
      expect(await peek(store)).toEqual({ version: SCHEMA_VERSION, attributes: want });

      for (let episode = 0; episode < EPISODES; episode++) {
        rmSync(store, { recursive: true, force: true });
        cpSync(legacy, store, { recursive: true });
        const kills = 1 + Math.floor(random() * MAX_KILLS_PER_EPISODE);
        const what: string[] = [];
        for (let k = 0; k < kills; k++) {
          const c = start();
          if (random() < 0.3) {
            what.push(await killIntoStart(c, startMs, random));
          } else {
            const parts = 1 + Math.floor(random() * 16);
            const interrupted = await killAtNewPart(c, join(store, "data", "coral", "span_attributes"), parts);
            what.push(`at new span_attributes part ${parts}${interrupted ? "" : " (it was ready first)"}`);
          }
          const held = await peek(store);
          what[what.length - 1] += ` → ${held.attributes === null ? "no span_attributes" : `version ${held.version}, ${held.attributes.rows} of ${want.rows} rows`}`;
          const where = `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}`;
          if (held.version >= 2) expect(held.attributes, where).toEqual(want);
          else if (held.attributes) {
            expect(held.attributes.distinct, `${where}: a row stored twice`).toBe(held.attributes.rows);
            expect(Number(held.attributes.rows), where).toBeLessThanOrEqual(Number(want.rows));
          }
        }
        const c = start();
        try {
          await c.ready;
        } finally {
          await c.kill();
        }
        expect(await peek(store), `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}`).toEqual({ version: SCHEMA_VERSION, attributes: want });
        console.log(`episode ${episode + 1}: killed ${what.join(", then ")}; the next start completed the fill`);
      }
    } finally {
      cli.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  600_000,
);
