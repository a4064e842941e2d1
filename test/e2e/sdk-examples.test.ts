// Every SDK example of the proto annotations (`sdk.example`, each alias's `example`) — the ones
// editors show on hover, the SDK site and docs/reference/ print — works as written: type-checked
// against the SDK's published types and run by `coral run` against a demo colony.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { rpcsOf } from "../../codegen/model.js";
import { file_coral_colony_v1_query } from "../../gen/coral/colony/v1/query_pb.js";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const examples = rpcsOf(file_coral_colony_v1_query.services).flatMap((r) =>
  r.sdk ? [{ fn: `coral.${r.sdk.module}.${r.sdk.function}`, code: r.sdk.example }, ...r.sdk.aliases.map((a) => ({ fn: `coral.${r.sdk!.module}.${a.function}`, code: a.example }))] : [],
);

let colony: SpawnedColony;
let dir: string;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
  dir = mkdtempSync(join(tmpdir(), "coral-sdk-examples-"));
});
afterAll(async () => {
  await colony?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it("every example in the SDK docs type-checks and runs against a demo colony", { timeout: 120_000 }, async () => {
  expect(examples.length).toBeGreaterThan(10);
  // One script, each example in a block of its own (they may reuse names), a marker before each so
  // a failure points at its example.
  const script = [`import * as coral from "@coral/sdk";`, ...examples.map((e) => `console.log(${JSON.stringify(`>>> ${e.fn}`)});\n{\n${e.code}\n}`)].join("\n");
  const path = join(dir, "examples.ts");
  writeFileSync(path, script + "\n");
  const r = await runCoral(["run", "--check", "--colony", colony.addr, path]);
  const last = [...r.stdout.matchAll(/^>>> (\S+)$/gm)].at(-1)?.[1];
  expect(r.stderr, `stopped in the example of ${last ?? "(none ran)"}`).toBe("");
  expect(r.code).toBe(0);
  expect([...r.stdout.matchAll(/^>>> (\S+)$/gm)].map((m) => m[1])).toEqual(examples.map((e) => e.fn));
});
