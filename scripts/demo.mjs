// `npm run demo`: an embedded colony on demo data, on a free port in a scratch directory,
// and the latency report run through `coral run` against it — what a newcomer sees first.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const coral = join(root, "bin/coral.cjs");
const dir = mkdtempSync(join(tmpdir(), "coral-demo-"));

// No OTLP receiver: the report needs none, and a colony already running on 4318 must not stop the demo.
const colony = spawn(
  process.execPath,
  [coral, "colony", "start", "--demo", "--listen", "127.0.0.1:0", "--otlp", "off", "--db", join(dir, "demo.duckdb")],
  { stdio: ["ignore", "pipe", "inherit"] },
);

function stopColony() {
  const exited = () => colony.exitCode !== null || colony.signalCode !== null;
  if (!exited()) colony.kill("SIGTERM");
  return new Promise((resolve) => (exited() ? resolve() : colony.once("exit", resolve)));
}

let code = 1;
let ran = false;
try {
  const address = await new Promise((resolve, reject) => {
    let out = "";
    colony.stdout.setEncoding("utf8").on("data", (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
      const m = /colony listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    colony.once("exit", (c) => reject(new Error(`the colony exited (code ${c}) before it was ready`)));
  });

  console.log(`\n$ coral run examples/latency-report.ts --colony ${address}\n`);
  const report = spawn(process.execPath, [coral, "run", "--colony", address, join(root, "examples/latency-report.ts")], {
    stdio: "inherit",
  });
  code = await new Promise((resolve) => report.once("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0))));
  ran = true;
} catch (err) {
  console.error(`demo: ${err.message}`);
} finally {
  await stopColony();
  rmSync(dir, { recursive: true, force: true });
}
if (ran) {
  console.log(`\nTry it yourself:\n  npx coral colony start --demo        # in one terminal\n  npx coral query services             # in another\n  npx coral run examples/latency-report.ts`);
}
process.exit(code);
