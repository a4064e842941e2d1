import { execFileSync } from "node:child_process";

// Tests exercise the CLI as users run it (bin/coral.cjs → dist/), so build it first.
export default function setup(): void {
  execFileSync(process.execPath, ["scripts/build.mjs"], { stdio: "inherit" });
}
