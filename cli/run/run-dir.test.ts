import { spawnSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRunDir, sweepStaleRunDirs } from "./run-dir.js";

let parent: string;
beforeAll(async () => {
  parent = await mkdtemp(join(tmpdir(), "coral-run-dir-test-"));
});
afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

const ns = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))![1];

describe("run directories", () => {
  it("are named after the pid namespace and pid of their run", async () => {
    const dir = await makeRunDir(parent);
    expect(basename(dir)).toMatch(new RegExp(`^coral-run-${ns}-${process.pid}-`));
    await rm(dir, { recursive: true });
  });

  it("a sweep removes those of runs that are gone, and only those", async () => {
    // A pid that existed and has exited: the child has been reaped by the time spawnSync returns.
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    const names = {
      gone: `coral-run-${ns}-${gone}-aaaaaa`,
      live: `coral-run-${ns}-${process.pid}-bbbbbb`,
      otherNamespace: `coral-run-1-${gone}-cccccc`,
      notOurs: `coral-run-test-dddddd`,
    };
    for (const name of Object.values(names)) await mkdir(join(parent, name, "deno_dir"), { recursive: true });
    await sweepStaleRunDirs(parent);
    expect((await readdir(parent)).sort()).toEqual([names.live, names.otherNamespace, names.notOurs].sort());
  });
});
