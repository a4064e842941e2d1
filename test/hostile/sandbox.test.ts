// The escape suite of `coral run` (issue #10): every test is one attempt a hostile script makes to
// get out of the sandbox, run through the real CLI against a real colony that requires a token.
// The script sits beside bait (.env, .git/config, SSH keys, a directory of secrets next to it, a
// fake ~/.ssh), and each attempt is judged on evidence, not on flags: the token and the bait never
// appear in any output; no file beside the script, outside it or in /tmp is created or changed; the
// run's temp directory is gone when it ends; no process started under `coral run` outlives it; and
// where memory is the attack, the peak RSS of `coral run` itself stays near a benign run's.
//
// Attempts a script makes from inside report themselves on stdout as "DENIED <what> <error name>"
// or "ESCAPED <what> <value>", so a permission error the script catches is told apart from a
// connection refused, a missing file or success.
import { createServer, type Server } from "node:net";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_SERVICES, runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";
import {
  BAIT,
  TOKEN,
  changes,
  runTracked,
  scene,
  sceneBase,
  snapshot,
  survivors,
  survivorsAfter,
  tmpEntriesOf,
  type Evidence,
  type Scene,
} from "../helpers/sandbox.js";

let colony: SpawnedColony;
/** The same measures for benign scripts: what any run costs, so that an attack is judged against it. */
const benign = { tmpPeakBytes: 0, cliPeakMiB: 0 };

beforeAll(async () => {
  // Data in the colony's real tables and files for SQL attempts to aim at: the demo's six services,
  // a span each (scripts count them; a demo seed would cost more than many of the attempts).
  colony = await spawnColony({ token: TOKEN });
  await storeServices(colony, DEMO_SERVICES, TOKEN);
  for (const source of [SDK + "console.log((await coral.services.list()).length);\n", 'console.log("hello");\n']) {
    const r = await attempt(source);
    expect(r.code, r.stderr).toBe(0);
    benign.tmpPeakBytes = Math.max(benign.tmpPeakBytes, r.tmpPeakBytes);
    benign.cliPeakMiB = Math.max(benign.cliPeakMiB, r.cliPeakMiB);
  }
}, 180_000);

afterAll(async () => {
  // A colony that restarted its worker during the suite explains "unavailable" answers above.
  const restarts = colony?.stderr().split("\n").filter((l) => /restart/.test(l)) ?? [];
  if (restarts.length) console.log(`colony restarts during the escape suite:\n${restarts.join("\n")}`);
  await colony?.stop();
  rmSync(sceneBase, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
/**
 * How far above a benign run `coral run` may peak while a script attacks it. Garbage the CLI has
 * not collected yet counts too (up to ~150 MiB measured under load for a 64 MiB flood), so the
 * floods below push 192 MiB through it: holding one would exceed this whatever the collector does.
 */
const CLI_HEADROOM_MIB = 128;
/** How much more than a benign run may appear in the run's temp directory; the disk attacks write 64 MiB or more. */
const TMP_HEADROOM = 8 * MiB;

const SDK = 'import * as coral from "@coral/sdk";\n';

/** Defines `probe(what, fn)`: runs fn and prints DENIED with the error's name, or ESCAPED with what it got. */
const P = `const probe = async (what: string, f: () => unknown) => {
  try {
    const v = await f();
    let shown: string;
    try { shown = typeof v === "object" ? JSON.stringify(v) : String(v); } catch { shown = String(v); }
    console.log("ESCAPED " + what + " " + String(shown).slice(0, 400));
  } catch (e) {
    // Deno reports a dynamic import refused for lack of read permission as a TypeError.
    const refused = (e as Error)?.name === "TypeError" && /^Requires \\w+ access/.test(String((e as Error).message));
    console.log("DENIED " + what + " " + (refused ? "NotCapable" : ((e as Error)?.name ?? typeof e)));
  }
};
`;

/** The error names of Deno's permission checks. */
const PERMISSION = /^(NotCapable|PermissionDenied)$/;

interface AttemptOptions {
  /** Extra scene files (see scene()). */
  extra?: Record<string, string>;
  /** `coral run` flags, before the script; a function when they name scene paths. */
  flags?: string[] | ((s: Scene) => string[]);
  /** Run the source under this file name in the script's directory instead of main.ts. */
  file?: string;
  /** The script's arguments (after --). */
  args?: string[];
  /** How `coral run` gets the token: $CORAL_TOKEN (default), --token, or --token-file. */
  token?: "env" | "flag" | "file";
  timeoutSec?: number;
  memoryMb?: number;
  input?: string;
  /** Run the source from stdin (`coral run -`), with the scene's proj/ as the working directory. */
  stdin?: boolean;
  pty?: boolean;
  onStdout?: (text: string, child: import("node:child_process").ChildProcess) => void;
  /** A signal-killed `coral run` cannot clean up: leave the after-checks of temp dir and processes to the test. */
  killed?: boolean;
  /** Called before the run with the scene, e.g. to place files that need its paths. */
  prepare?: (s: Scene) => void;
}

interface Attempt extends Evidence {
  scene: Scene;
  /** stdout + stderr. */
  out: string;
}

/**
 * Runs one attempt and checks what every attempt must leave untouched: no token or bait in any
 * output, no change beside the script, outside it or in the fake home, nothing in /tmp carrying the
 * scene's tag, and (unless `killed`) no temp directory and no process left behind.
 */
async function attempt(source: string | ((s: Scene) => string), o: AttemptOptions = {}): Promise<Attempt> {
  const s = scene(typeof source === "string" ? source : "", o.extra);
  if (typeof source !== "string") writeFileSync(s.script, source(s));
  o.prepare?.(s);
  let script = s.script;
  if (o.file) {
    script = join(s.proj, o.file);
    writeFileSync(script, readFileSync(s.script));
  }
  const watched = [s.proj, s.outside, s.home];
  const before = watched.map(snapshot);
  const env: Record<string, string> = { HOME: s.home };
  const tokenArgs: string[] = [];
  if ((o.token ?? "env") === "env") env.CORAL_TOKEN = TOKEN;
  else if (o.token === "flag") tokenArgs.push("--token", TOKEN);
  else {
    const file = join(s.home, ".coral-token");
    writeFileSync(file, TOKEN, { mode: 0o600 });
    before[2] = snapshot(s.home);
    tokenArgs.push("--token-file", file);
  }
  const args = [
    "run",
    "--colony",
    colony.addr,
    ...tokenArgs,
    "--timeout",
    String(o.timeoutSec ?? 30),
    ...(o.memoryMb ? ["--memory", String(o.memoryMb)] : []),
    ...(typeof o.flags === "function" ? o.flags(s) : (o.flags ?? [])),
    o.stdin ? "-" : script,
    ...(o.args ? ["--", ...o.args] : []),
  ];
  const ev = await runTracked({
    args,
    env,
    tmp: s.tmp,
    cwd: o.stdin ? s.proj : undefined,
    input: o.stdin ? (typeof source === "string" ? source : source(s)) : o.input,
    pty: o.pty,
    onStdout: o.onStdout,
  });
  const out = ev.stdout + ev.stderr;
  expect(out, "the token was printed").not.toContain(TOKEN);
  expect(out, "bait was printed").not.toContain(BAIT);
  const after = watched.map(snapshot);
  expect(watched.flatMap((_, i) => changes(before[i]!, after[i]!)), "files changed").toEqual([]);
  expect(tmpEntriesOf(s.tag), "files created in /tmp").toEqual([]);
  if (!o.killed) {
    expect(readdirSync(s.tmp), "the run's temp directory was left behind").toEqual([]);
    expect(survivors(ev, s), "processes outlived coral run").toEqual([]);
  }
  return { ...ev, scene: s, out };
}

/** The script ran, reported at least one attempt, and every attempt failed with an error named like `names`. */
function expectDenied(r: Attempt, names: RegExp = PERMISSION): void {
  expect(r.stdout, r.stderr).not.toMatch(/^ESCAPED/m);
  const lines = r.stdout.split("\n").filter((l) => l.startsWith("DENIED "));
  expect(lines.length, `no attempt reported:\n${r.out}`).toBeGreaterThan(0);
  for (const l of lines) expect(l.split(" ").pop(), l).toMatch(names);
  expect(r.code, r.stderr).toBe(0);
}

/** Refused before running: exit 1, one line naming the import, and the script printed nothing. */
function expectRefusedImport(r: Attempt, message: RegExp = /refused import/): void {
  expect(r.stderr).toMatch(message);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
}

/** The first line of the script's stdout as JSON; the whole output in the failure when it is not. */
function firstJson(r: Attempt): unknown {
  try {
    return JSON.parse(r.stdout.split("\n")[0]!);
  } catch {
    throw new Error(`expected a JSON answer on the first line, got:\n${r.out}\n(exit ${r.code})`);
  }
}

/** A loopback TCP listener counting who connects: evidence that a network attempt reached nothing. */
async function canary(): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((sock) => {
    hits++;
    sock.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    hits: () => hits,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** The colony still answers another client, with the token. */
async function expectColonyServing(): Promise<void> {
  const r = await runCoral(["query", "services", "--colony", colony.addr, "--output", "json"], { env: { CORAL_TOKEN: TOKEN } });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain("payments");
}

describe.concurrent("coral run escape attempts", () => {
  describe("network: a script has none, not even to the colony", () => {
    const cases: [string, (p: number) => string, RegExp?][] = [
      ["fetch to the colony's own address, with a Connect request", () => `fetch("http://${colony.addr}/coral.colony.v1.QueryService/ListServices", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })`],
      ["fetch to 127.0.0.1", (p) => `fetch("http://127.0.0.1:${p}/")`],
      ["fetch to localhost", (p) => `fetch("http://localhost:${p}/")`],
      ["fetch to [::1]", (p) => `fetch("http://[::1]:${p}/")`],
      ["fetch to 0.0.0.0", (p) => `fetch("http://0.0.0.0:${p}/")`],
      ["fetch to the numeric form 2130706433 (the deny-net bypass fixed in denoland/deno#33203)", (p) => `fetch("http://2130706433:${p}/")`],
      ["fetch to the hex form 0x7f.1", (p) => `fetch("http://0x7f.1:${p}/")`],
      ["fetch to the short form 127.1", (p) => `fetch("http://127.1:${p}/")`],
      ["fetch to a public name that resolves to loopback (127.0.0.1.nip.io)", (p) => `fetch("http://127.0.0.1.nip.io:${p}/")`],
      ["WebSocket to 127.0.0.1", (p) => `new Promise((res, rej) => { const w = new WebSocket("ws://127.0.0.1:${p}/"); w.onopen = () => res("open"); w.onerror = () => rej(Object.assign(new Error("error event"), { name: "ErrorEvent" })); })`],
      ["WebSocket to a hostname resolving to loopback (CVE-2026-49860: WebSocket checked the name, not the resolved address)", (p) => `new Promise((res, rej) => { const w = new WebSocket("ws://localhost:${p}/"); w.onopen = () => res("open"); w.onerror = () => rej(Object.assign(new Error("error event"), { name: "ErrorEvent" })); })`],
      ["EventSource to loopback", (p) => `new Promise((res, rej) => { const es = new EventSource("http://127.0.0.1:${p}/"); es.onopen = () => res("open"); es.onerror = () => { es.close(); rej(Object.assign(new Error("error event"), { name: "ErrorEvent" })); }; })`, /^(NotCapable|PermissionDenied|ErrorEvent)$/],
      ["Deno.connect (TCP)", (p) => `Deno.connect({ hostname: "127.0.0.1", port: ${p} })`],
      ["Deno.connectTls", (p) => `Deno.connectTls({ hostname: "127.0.0.1", port: ${p} })`],
      ["Deno.listen on the colony's own port (squatting it)", () => `Deno.listen({ hostname: "127.0.0.1", port: ${colony.addr.split(":")[1]} }).addr`],
      ["Deno.listenDatagram (UDP)", () => `(Deno as any).listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 })`, /^(NotCapable|PermissionDenied|TypeError)$/],
      ["Deno.resolveDns", () => `Deno.resolveDns("localhost", "A")`],
      ["node:net connect", (p) => `import("node:net").then((net) => new Promise((res, rej) => { const s = net.connect(${p}, "127.0.0.1"); s.on("connect", () => res("connected")); s.on("error", rej); }))`, /^\w*(Error|NotCapable|PermissionDenied)$/],
      ["node:http request", (p) => `import("node:http").then((http) => new Promise((res, rej) => { const q = http.get("http://127.0.0.1:${p}/", (r) => res(r.statusCode)); q.on("error", rej); }))`, /^\w*(Error|NotCapable|PermissionDenied)$/],
      ["node:tls connect (CVE-2026-44726 sent TLS data in plaintext after a retry)", (p) => `import("node:tls").then((tls) => new Promise((res, rej) => { const s = tls.connect({ host: "127.0.0.1", port: ${p}, autoSelectFamily: true }); s.on("secureConnect", () => res("connected")); s.on("error", rej); }))`, /^\w*(Error|NotCapable|PermissionDenied)$/],
      ["node:dns lookup of localhost", () => `import("node:dns").then((dns) => dns.promises.lookup("localhost"))`, /^\w*(Error|NotCapable|PermissionDenied)$/],
    ];
    for (const [what, code, names] of cases) {
      it(`${what}: denied, and nothing connects`, async () => {
        const c = await canary();
        try {
          const r = await attempt(`${P}await probe("net", () => ${code(c.port)});\nDeno.exit(0);\n`);
          expectDenied(r, names);
          expect(c.hits()).toBe(0);
        } finally {
          await c.close();
        }
      });
    }

    it("Deno.connect to a Unix socket beside the script: denied, and nothing connects", async () => {
      let hits = 0;
      const sockDir = join(sceneBase, `unix-${Date.now()}`);
      mkdirSync(sockDir, { recursive: true });
      const path = join(sockDir, "s.sock");
      const server = createServer((s) => {
        hits++;
        s.destroy();
      });
      await new Promise<void>((r) => server.listen(path, r));
      try {
        const r = await attempt(`${P}await probe("unix", () => Deno.connect({ transport: "unix", path: ${JSON.stringify(path)} }));\n`);
        expectDenied(r);
        expect(hits).toBe(0);
      } finally {
        await new Promise((r) => server.close(r));
      }
    });

    it("Deno.listen on a Unix socket in the script's directory: denied, no socket file appears", async () => {
      const r = await attempt((s) => `${P}await probe("unix listen", () => Deno.listen({ transport: "unix", path: ${JSON.stringify(join(s.proj, "l.sock"))} }));\n`);
      expectDenied(r);
    });

    it("a computed dynamic import of http code from loopback: refused, and nothing connects", async () => {
      const c = await canary();
      try {
        const r = await attempt(`${P}const u = "http://127.0.0.1:" + ${c.port} + "/x.js";\nawait probe("import", () => import(u));\n`);
        expect(r.stdout).toMatch(/^DENIED import \w+/m);
        expect(r.stdout).not.toMatch(/^ESCAPED/m);
        expect(c.hits()).toBe(0);
      } finally {
        await c.close();
      }
    });
  });

  describe("secrets: the token and the environment never reach the script", () => {
    const reads: [string, string, AttemptOptions?][] = [
      ['Deno.env.get("CORAL_TOKEN")', 'Deno.env.get("CORAL_TOKEN")'],
      ["Deno.env.toObject()", "Deno.env.toObject()"],
      ["/proc/self/environ", 'Deno.readTextFileSync("/proc/self/environ")'],
      ["/proc/self/cmdline", 'Deno.readTextFileSync("/proc/self/cmdline")'],
      ["/proc/<ppid>/environ, which holds $CORAL_TOKEN", "Deno.readTextFileSync(`/proc/${Deno.ppid}/environ`)"],
      ["/proc/<ppid>/cmdline when the token was given with --token", "Deno.readTextFileSync(`/proc/${Deno.ppid}/cmdline`)", { token: "flag" }],
      ["/proc/<ppid>/ listed with Deno.readDir", "Array.from(Deno.readDirSync(`/proc/${Deno.ppid}`)).length"],
      ["/proc/self/mem (CVE-2024-34346: special files need --allow-all)", 'Deno.readFileSync("/proc/self/mem")'],
      ["/proc/<ppid>/mem", "Deno.readFileSync(`/proc/${Deno.ppid}/mem`)"],
      ["/proc/self/fd/3, the channel's socket (denoland/deno#23703)", 'Deno.readFileSync("/proc/self/fd/3")'],
    ];
    for (const [what, expr, o] of reads) {
      it(`${what}: denied`, async () => {
        expectDenied(await attempt(`${P}await probe("read", async () => ${expr});\n`, o));
      });
    }

    it("--token-file: the token file cannot be read, though its path is on the parent's command line", async () => {
      const r = await attempt((s) => `${P}await probe("token file", () => Deno.readTextFileSync(${JSON.stringify(join(s.home, ".coral-token"))}));\n`, { token: "file" });
      expectDenied(r);
    });

    it("node:process env holds only what the script may read", async () => {
      const r = await attempt(`${P}import process from "node:process";\nawait probe("env", () => Object.keys(process.env).join(","));\n`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^(DENIED env (NotCapable|PermissionDenied)|ESCAPED env (CORAL_PARAMS|CORAL_MODE)?(,(CORAL_PARAMS|CORAL_MODE))?)$/m);
    });

    it("probing variable names one by one finds exactly CORAL_PARAMS and CORAL_MODE=cli", async () => {
      const r = await attempt(
        `const names = ["CORAL_TOKEN", "CORAL_COLONY_ADDR", "CORAL_PARAMS", "CORAL_MODE", "HOME", "PATH", "TMPDIR", "USER", "NODE_CHANNEL_FD", "NODE_OPTIONS", "DENO_DIR", "LANG"];
const readable = names.filter((n) => { try { return Deno.env.get(n) !== undefined; } catch { return false; } });
console.log("readable=" + readable.join(",") + " mode=" + Deno.env.get("CORAL_MODE"));
`,
      );
      expect(r.stdout).toBe("readable=CORAL_PARAMS,CORAL_MODE mode=cli\n");
    });

    it("walking the SDK module and globalThis finds no token or colony address", async () => {
      const r = await attempt(
        `${SDK}// Some getters of web classes return promises that reject when called off their instance.
globalThis.addEventListener("unhandledrejection", (e) => e.preventDefault());
const seen = new Set<unknown>();
const dump: string[] = [];
const walk = (v: unknown, depth: number) => {
  if (depth > 4 || v === null || seen.has(v)) return;
  if (typeof v === "string") { dump.push(v); return; }
  if (typeof v !== "object" && typeof v !== "function") return;
  seen.add(v);
  if (typeof v === "function") dump.push(Function.prototype.toString.call(v));
  for (const k of Reflect.ownKeys(v as object)) { try { walk((v as Record<PropertyKey, unknown>)[k], depth + 1); } catch { /* getter */ } }
};
walk(coral, 0);
walk(globalThis, 0);
const text = dump.join("\\n");
console.log("bytes=" + text.length, "hasAddr=" + text.includes(${JSON.stringify(colony.addr)}));
console.log(text);
`,
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^bytes=\d+ hasAddr=false$/m);
    });

    it("--audit: the audit log records the calls but never the token", async () => {
      const r = await attempt(`${SDK}await coral.services.list();\nconsole.log("called");\n`, { flags: (s) => ["--audit", join(s.dir, "audit.jsonl")] });
      expect(r.stdout).toBe("called\n");
      const text = readFileSync(join(r.scene.dir, "audit.jsonl"), "utf8");
      expect(text).toContain("ListServices");
      expect(text).not.toContain(TOKEN);
    });
  });

  describe("files: only the script's own module graph loads; nothing is read without --allow-read", () => {
    // The last element, when present, is what refuses the import instead of coral run's own check.
    const imports: [string, string, AttemptOptions?, RegExp?][] = [
      ['./.env as text (denoland/deno#30184: raw imports need read permission)', 'import t from "./.env" with { type: "text" };\nconsole.log(t);\n'],
      ["./.env as bytes", 'import b from "./.env" with { type: "bytes" };\nconsole.log(new TextDecoder().decode(b));\n'],
      ["./.git/config as text", 'import t from "./.git/config" with { type: "text" };\nconsole.log(t);\n'],
      ["./sub/../sub/id_rsa as text", 'import t from "./sub/../sub/id_rsa" with { type: "text" };\nconsole.log(t);\n'],
      ["./id_rsa as code (its syntax error would quote it)", 'import "./id_rsa";\n'],
      ["./data.txt as text: an ordinary file inside the directory is data, not a module", 'import t from "./data.txt" with { type: "text" };\nconsole.log(t);\n'],
      ["../outside/outside.ts (denoland/deno#30301: static imports read source without read permission)", 'import x from "../outside/outside.ts";\nconsole.log(x);\n'],
      ["an absolute path outside", 'import x from "ABS/outside/outside.ts";\nconsole.log(x);\n'],
      ["a file: URL of a JSON file outside", 'import j from "file://ABS/outside/secret.json" with { type: "json" };\nconsole.log(JSON.stringify(j));\n'],
      ["a literal dynamic import of a module outside", 'const m = await import("../outside/outside.ts");\nconsole.log(m.default);\n'],
      ["a symlink beside the script to a module outside", 'import x from "./linked.ts";\nconsole.log(x);\n', { extra: { "proj/linked.ts": "->../outside/outside.ts" } }],
      ["a symlinked directory leading outside", 'import x from "./linkdir/outside.ts";\nconsole.log(x);\n', { extra: { "proj/linkdir": "->../outside" } }],
      ["a data: module that imports a file outside as text", `import t from "data:text/javascript,export { default } from 'file://ABS/outside/secret.txt' with { type: 'text' };";\nconsole.log(t);\n`],
      ['a /// <reference path> to a declaration file outside, under --check (a type error would quote it)', '/// <reference path="../outside/secret.d.ts" />\nconsole.log("ran");\n', { flags: ["--check"] }],
      ["a @ts-self-types directive leading outside, under --check", 'import x from "./lib.js";\nconsole.log(x);\n', { flags: ["--check"], extra: { "proj/lib.js": '// @ts-self-types="../outside/secret.d.ts"\nexport default 1;\n' } }],
      ["a bare specifier resolved through a planted node_modules whose package.json main leads outside (GHSA-968w-xfqw-vp9q)", 'import x from "evil-pkg";\nconsole.log(JSON.stringify(x));\n', { extra: { "proj/package.json": '{ "name": "p", "dependencies": { "evil-pkg": "1.0.0" } }', "proj/node_modules/evil-pkg/package.json": '{ "name": "evil-pkg", "main": "../../../outside/secret.json" }', "proj/deno.json": '{ "nodeModulesDir": "manual" }' } }, /refused import|Import "evil-pkg" not a dependency/],
      ["an http: import from a name resolving to loopback (denoland/deno#36486)", 'import "http://127.0.0.1.nip.io:9/x.ts";\n'],
      ["an https: import", 'import "https://example.com/x.ts";\n'],
      ["a jsr: import", 'import "jsr:@std/path";\n'],
      ["an npm: import", 'import "npm:left-pad";\n'],
    ];
    for (const [what, source, o, message] of imports) {
      it(`import of ${what}: refused before the script runs`, async () => {
        const r = await attempt((s) => source.replaceAll("ABS", s.dir), o);
        expectRefusedImport(r, message);
      });
    }

    const reads: [string, (s: Scene) => string, AttemptOptions?][] = [
      ["a computed dynamic import of a module outside", () => 'const p = "../outside/" + "outside.ts";\nawait probe("import", () => import(p).then((m) => m.default));\n'],
      ["a computed dynamic import of a module inside that is not in the graph", () => 'const p = "./ins" + "ide.ts";\nawait probe("import", () => import(p).then((m) => m.default));\n'],
      ["a computed dynamic import of a text file inside", () => 'const p = "./.e" + "nv";\nawait probe("import", () => import(p, { with: { type: "text" } }).then((m) => m.default));\n'],
      ["a blob: module that reads a file", (s) => `const u = URL.createObjectURL(new Blob(['export default Deno.readTextFileSync(${JSON.stringify(join(s.outside, "secret.txt"))})'], { type: "text/javascript" }));\nawait probe("blob", () => import(u).then((m) => m.default));\n`],
      ["a Worker from a file outside", (s) => `await probe("worker", () => new Promise((res, rej) => { const w = new Worker(${JSON.stringify("file://" + join(s.outside, "outside.ts"))}, { type: "module" }); w.onmessage = (e) => { res(e.data); w.terminate(); }; w.onerror = (e) => { e.preventDefault(); rej(Object.assign(new Error(e.message), { name: /Requires read|NotCapable/.test(e.message) ? "NotCapable" : "WorkerError" })); }; setTimeout(() => { w.terminate(); rej(Object.assign(new Error("no answer"), { name: "NoAnswer" })); }, 5000); }));\n`],
      ["Deno.readTextFile of /etc/passwd", () => 'await probe("read", () => Deno.readTextFile("/etc/passwd"));\n'],
      ["Deno.readTextFile of ~/.ssh/id_rsa", (s) => `await probe("read", () => Deno.readTextFile(${JSON.stringify(join(s.home, ".ssh/id_rsa"))}));\n`],
      ["Deno.readFile of the colony's DuckDB file", () => `await probe("read", () => Deno.readFile(${JSON.stringify(colony.dbPath)}));\n`],
      ["Deno.readTextFile of ./.env beside the script", (s) => `await probe("read", () => Deno.readTextFile(${JSON.stringify(join(s.proj, ".env"))}));\n`],
      ["Deno.readDir of the script's own directory", (s) => `await probe("readDir", async () => { const n = []; for await (const e of Deno.readDir(${JSON.stringify(s.proj)})) n.push(e.name); return n; });\n`],
      ["Deno.stat of a bait file (an existence oracle)", (s) => `await probe("stat", () => Deno.stat(${JSON.stringify(join(s.proj, ".env"))}).then((st) => st.size));\n`],
      ["node:fs readFileSync of a bait file", (s) => `import { readFileSync } from "node:fs";\nawait probe("node:fs", () => readFileSync(${JSON.stringify(join(s.outside, "secret.txt"))}, "utf8"));\n`],
      ["fetch of a file: URL", () => 'await probe("fetch", () => fetch("file:///etc/passwd").then((r) => r.text()));\n'],
      ["createRequire of the planted package (GHSA-968w-xfqw-vp9q at run time)", () => 'import { createRequire } from "node:module";\nawait probe("require", () => createRequire(import.meta.url)("evil-pkg"));\n', { extra: { "proj/node_modules/evil-pkg/package.json": '{ "name": "evil-pkg", "main": "../../../outside/secret.json" }' } }],
    ];
    for (const [what, source, o] of reads) {
      it(`${what}: denied`, async () => {
        const r = await attempt((s) => P + source(s), o);
        expectDenied(r);
      });
    }

    describe("--allow-read DIR opens DIR and nothing through it", () => {
      const extra = {
        "proj/data/ok.txt": "INSIDE\n",
        "proj/data/sub/x.txt": "x\n",
        "proj/data/leak.txt": "->../../outside/secret.txt",
        "proj/data/up": "->../../outside",
      };
      const cases: [string, string][] = [
        ["a symlink in DIR to a file outside", "leak.txt"],
        ["a symlinked directory in DIR leading outside", "up/secret.txt"],
        ["DIR/sub/../leak.txt", "sub/../leak.txt"],
        ["DIR/../../outside/secret.txt", "../../outside/secret.txt"],
      ];
      for (const [what, rel] of cases) {
        it(`${what}: denied, while DIR itself is readable`, async () => {
          const r = await attempt(
            (s) => `${P}const d = ${JSON.stringify(join(s.proj, "data"))};
console.log("control " + Deno.readTextFileSync(d + "/ok.txt").trim());
await probe("read", () => Deno.readTextFileSync(d + "/" + ${JSON.stringify(rel)}));
`,
            { extra, flags: (s) => ["--allow-read", join(s.proj, "data")] },
          );
          expect(r.stdout).toMatch(/^control INSIDE$/m);
          expectDenied(r);
        });
      }

      it("a text import of a symlink in DIR that leads outside: refused before running", async () => {
        const r = await attempt('import t from "./data/leak.txt" with { type: "text" };\nconsole.log(t);\n', {
          extra,
          flags: (s) => ["--allow-read", join(s.proj, "data")],
        });
        expectRefusedImport(r);
      });
    });

    it("a script on stdin cannot import files beside the working directory", async () => {
      const r = await attempt('import x from "./inside.ts";\nimport t from "./.env" with { type: "text" };\nconsole.log(x, t);\n', { stdin: true });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
    });

    const sql: [string, (db: string) => string][] = [
      ["read_blob of the colony's DuckDB file", (db) => `SELECT * FROM read_blob('${db}')`],
      ["COPY … TO a file beside the colony", (db) => `COPY (SELECT 1) TO '${db}.out.csv'`],
    ];
    for (const [what, q] of sql) {
      it(`SQL through coral.db.query: ${what} — refused by the colony (invalid_argument)`, async () => {
        const r = await attempt(`${SDK}try { console.log(JSON.stringify(await coral.db.query(${JSON.stringify(q(colony.dbPath))}))); } catch (e) { console.log("refused " + (e as coral.CoralError).code + " " + (e as Error).message); }\n`);
        expect(r.stdout).toMatch(/^refused invalid_argument /);
        expect(existsSync(`${colony.dbPath}.out.csv`)).toBe(false);
      });
    }
  });

  describe("disk: a script writes nothing anywhere", () => {
    const writes: [string, (s: Scene) => string][] = [
      ["Deno.writeTextFile beside the script", (s) => `Deno.writeTextFile(${JSON.stringify(join(s.proj, "w.txt"))}, "x")`],
      ["Deno.writeTextFile into /tmp", (s) => `Deno.writeTextFile("/tmp/${s.tag}", "x")`],
      ["Deno.mkdir beside the script", (s) => `Deno.mkdir(${JSON.stringify(join(s.proj, "newdir"))})`],
      ["Deno.makeTempFile()", (s) => `Deno.makeTempFile({ prefix: "${s.tag}" })`],
      ["Deno.makeTempDir in the script's directory", (s) => `Deno.makeTempDir({ dir: ${JSON.stringify(s.proj)} })`],
      ['Deno.makeTempFile({ prefix: "../../x" }): prefix traversal', (s) => `Deno.makeTempFile({ prefix: "../../tmp/${s.tag}" })`],
      ["node:fs writeFileSync", (s) => `import("node:fs").then((fs) => fs.writeFileSync(${JSON.stringify(join(s.proj, "n.txt"))}, "x"))`],
      ["a write through /proc/self/fd/1", () => `Deno.writeTextFile("/proc/self/fd/1", "x")`],
      ["Deno.chmod of the script", (s) => `Deno.chmod(${JSON.stringify(s.script)}, 0o777)`],
      ["Deno.symlink", (s) => `Deno.symlink("/etc/passwd", ${JSON.stringify(join(s.proj, "pw"))})`],
      ["Deno.link (a hard link to a bait file)", (s) => `Deno.link(${JSON.stringify(join(s.proj, ".env"))}, "/tmp/${s.tag}")`],
      ["Deno.rename of a bait file", (s) => `Deno.rename(${JSON.stringify(join(s.proj, ".env"))}, ${JSON.stringify(join(s.proj, "env.txt"))})`],
      ["Deno.truncate of the script", (s) => `Deno.truncate(${JSON.stringify(s.script)}, 0)`],
      ["Deno.utime of the script", (s) => `Deno.utime(${JSON.stringify(s.script)}, 0, 0)`],
      ["Deno.remove of a bait file", (s) => `Deno.remove(${JSON.stringify(join(s.proj, "id_rsa"))})`],
    ];
    for (const [what, expr] of writes) {
      it(`${what}: denied, nothing created or changed`, async () => {
        expectDenied(await attempt((s) => `${P}await probe("write", () => ${expr(s)});\n`));
      });
    }

    it("the Cache API with 64 MiB of bodies: refused, the run directory does not grow", async () => {
      const r = await attempt(`${P}await probe("caches", async () => { const c = await caches.open("x"); for (let i = 0; i < 64; i++) await c.put("http://x/" + i, new Response(new Uint8Array(1 << 20))); return "stored"; });\n`);
      expectDenied(r, /^\w+$/);
      expect(r.tmpPeakBytes).toBeLessThan(benign.tmpPeakBytes + TMP_HEADROOM);
    });

    it("localStorage filled to its quota: refused, the run directory does not grow", async () => {
      const r = await attempt(`${P}await probe("localStorage", () => { const s = "x".repeat(1 << 20); for (let i = 0; i < 9; i++) localStorage.setItem("k" + i, s); return "stored"; });\n`);
      expectDenied(r, /^\w+$/);
      expect(r.tmpPeakBytes).toBeLessThan(benign.tmpPeakBytes + TMP_HEADROOM);
    });

    it("Deno.openKv: not available", async () => {
      expectDenied(await attempt(`${P}await probe("kv", async () => { const kv = await (Deno as any).openKv(); await kv.set(["k"], "x".repeat(1 << 20)); return "stored"; });\n`), /^(NotCapable|PermissionDenied|TypeError)$/);
    });

    it("1,000 data: modules of 64 KiB imported at run time, each cached by Deno: the run directory stays bounded", async () => {
      const r = await attempt(
        'let n = 0;\ntry { for (let i = 0; i < 1000; i++) { await import("data:text/javascript," + encodeURIComponent("export const x = " + i + "; /*" + "y".repeat(65536) + "*/")); n++; } } catch (e) { console.log((e as Error).name); }\nconsole.log("imported " + n);\n',
        { timeoutSec: 50 },
      );
      // Unbounded, these imports grow Deno's code and dependency caches by 323 MiB (measured with a
      // plain `deno run`); coral run caps each cache file at 32 MiB (FILE_SIZE_LIMIT_MIB).
      expect(r.tmpPeakBytes).toBeLessThan(benign.tmpPeakBytes + 160 * MiB);
      expect(r.code === 0 || /more than \d+ MiB of compiled code/.test(r.stderr), r.stderr).toBe(true);
    }, 90_000);
  });

  describe("processes, native code and system information: none", () => {
    const cases: [string, string][] = [
      ["Deno.Command", 'new Deno.Command("/bin/sh", { args: ["-c", "id"] }).output().then((o) => new TextDecoder().decode(o.stdout))'],
      ["node:child_process execSync", 'import("node:child_process").then((cp) => String(cp.execSync("id")))'],
      ["node:child_process spawnSync with shell: true and a command substitution (CVE-2026-27190, CVE-2026-32260)", 'import("node:child_process").then((cp) => { const r = cp.spawnSync("echo", ["`id`", "$(id)"], { shell: true }); if (r.error) throw r.error; return String(r.stdout); })'],
      ["Deno.dlopen of libc", 'Deno.dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } }).symbols.getpid()'],
      ["node:os hostname", 'import("node:os").then((os) => os.hostname())'],
      ["node:os userInfo", 'import("node:os").then((os) => os.userInfo())'],
      ["node:os networkInterfaces", 'import("node:os").then((os) => os.networkInterfaces())'],
      ["Deno.hostname", "Deno.hostname()"],
      ["Deno.osRelease", "Deno.osRelease()"],
      ["Deno.loadavg", "Deno.loadavg()"],
      ["Deno.systemMemoryInfo", "Deno.systemMemoryInfo()"],
      ["Deno.kill of the parent (SIGCONT, harmless if it got through)", 'Deno.kill(Deno.ppid, "SIGCONT")'],
    ];
    for (const [what, expr] of cases) {
      it(`${what}: denied`, async () => {
        expectDenied(await attempt(`${P}await probe("sys", () => ${expr});\n`), /^(NotCapable|PermissionDenied)$/);
      });
    }
  });

  describe("escalation: nothing the script or its directory holds grants more", () => {
    it("Deno.permissions.request under a terminal (GHSA-vq67-rp93-65qf, GHSA-mc52-jpm2-cqh6: prompt spoofing): no prompt, denied", async () => {
      const r = await attempt(
        `const s = await Deno.permissions.request({ name: "read", path: "/etc/passwd" });
console.log("state=" + s.state);
try { Deno.readTextFileSync("/etc/passwd"); console.log("READ"); } catch (e) { console.log("read " + (e as Error).name); }
`,
        { pty: true, input: "y\ny\nA\n" },
      );
      expect(r.stdout).toContain("state=denied");
      expect(r.stdout).toMatch(/read (NotCapable|PermissionDenied)/);
      expect(r.stdout).not.toContain("Deno requests");
      expect(r.stdout).not.toMatch(/READ\r?\n/);
    });

    it("Deno.permissions.query: nothing is granted but the two variables", async () => {
      const r = await attempt(
        `const out: string[] = [];
for (const d of [{ name: "read" }, { name: "write" }, { name: "net" }, { name: "run" }, { name: "ffi" }, { name: "sys" }, { name: "env" }, { name: "env", variable: "CORAL_PARAMS" }, { name: "env", variable: "CORAL_MODE" }, { name: "env", variable: "CORAL_TOKEN" }]) {
  out.push(JSON.stringify(d) + "=" + (await Deno.permissions.query(d as Deno.PermissionDescriptor)).state);
}
console.log(out.join("\\n"));
`,
      );
      const granted = r.stdout.split("\n").filter((l) => l.endsWith("=granted"));
      expect(granted).toEqual(['{"name":"env","variable":"CORAL_PARAMS"}=granted', '{"name":"env","variable":"CORAL_MODE"}=granted']);
    });

    for (const smuggled of ["--allow-all", "--allow-read=/"]) {
      it(`"${smuggled}" among the script's arguments reaches Deno.args only`, async () => {
        const r = await attempt(`${P}console.log(JSON.stringify(Deno.args));\nawait probe("read", () => Deno.readTextFileSync("/etc/passwd"));\n`, { args: [smuggled] });
        expect(r.stdout).toContain(JSON.stringify([smuggled]));
        expectDenied(r);
      });
    }

    it("coral run --allow-net: a usage error (exit 2); the script does not run", async () => {
      const r = await attempt('console.log("RAN");\n', { flags: ["--allow-net"] });
      expect(r.code).toBe(2);
      expect(r.stdout).not.toContain("RAN");
    });

    it('--param "x=--allow-all" reaches CORAL_PARAMS only', async () => {
      const r = await attempt(`${P}${SDK}console.log(coral.params.string("x"));\nawait probe("read", () => Deno.readTextFileSync("/etc/passwd"));\n`, { flags: ["--param", "x=--allow-all"] });
      expect(r.stdout).toMatch(/^--allow-all$/m);
      expectDenied(r);
    });

    it("a script file named --allow-all.ts gains nothing", async () => {
      const r = await attempt(`${P}await probe("read", () => Deno.readTextFileSync("/etc/passwd"));\n`, { file: "--allow-all.ts" });
      expectDenied(r);
    });

    it("a deno.json planted beside the script (permissions, an import map for @coral/sdk) is not read", async () => {
      const r = await attempt(`${P}${SDK}console.log("sdk " + typeof coral.services.list);\nawait probe("read", () => Deno.readTextFileSync("/etc/passwd"));\n`, {
        extra: {
          "proj/deno.json": JSON.stringify({ permissions: { default: { read: true, net: true, env: true } }, imports: { "@coral/sdk": "../outside/outside.ts" }, unstable: ["kv", "net"] }),
        },
      });
      expect(r.stdout).toMatch(/^sdk function$/m);
      expectDenied(r);
    });

    it("an import_map.json and deno.lock planted beside the script are neither used nor rewritten", async () => {
      const r = await attempt('import x from "./inside.ts";\nconsole.log(x);\n', {
        extra: { "proj/import_map.json": JSON.stringify({ imports: { "./inside.ts": "../outside/outside.ts" } }), "proj/deno.lock": '{ "version": "4" }' },
      });
      expect(r.stdout).toBe("inside\n");
      expect(r.code).toBe(0);
    });

    it("a Worker asking for more permissions than the script has: refused", async () => {
      const r = await attempt(
        `${P}await probe("worker", () => new Promise((res, rej) => { try { const w = new Worker("data:text/javascript,postMessage(Deno.readTextFileSync('/etc/passwd'))", { type: "module", deno: { permissions: { read: true, net: true, env: true, run: true } } } as WorkerOptions); w.onmessage = (e) => { res(e.data); w.terminate(); }; w.onerror = (e) => { e.preventDefault(); rej(Object.assign(new Error(e.message), { name: "NotCapable" })); }; } catch (e) { rej(e); } }));\n`,
      );
      // Deno refuses the option itself (it needs --unstable-worker-options, which coral run never passes) and ends the run.
      expect(r.stdout).not.toMatch(/ESCAPED/);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--unstable-worker-options|NotCapable/);
    });

    it("a Worker from a data: URL is as confined as the script", async () => {
      const r = await attempt(
        `const w = new Worker("data:text/javascript," + encodeURIComponent("let r; try { r = 'ESCAPED ' + Deno.readTextFileSync('/etc/passwd').length; } catch (e) { r = 'DENIED worker ' + e.name; } postMessage(r);"), { type: "module" });
w.onmessage = (e) => { console.log(e.data); w.terminate(); };
`,
      );
      expectDenied(r);
    });

    it("V8 flags smuggled among the script's arguments do not reach V8 (natives syntax stays off)", async () => {
      const r = await attempt(`${P}await probe("natives", () => (0, eval)("%GetHeapUsage()"));\n`, { args: ["--v8-flags=--allow-natives-syntax"] });
      expectDenied(r, /^SyntaxError$/);
    });
  });

  describe("the SDK's channel: the script shares its isolate with the SDK and may write anything to it", () => {
    /** Sends raw messages on the channel Deno opened for the SDK, then keeps the run alive briefly. */
    const send = (...messages: string[]) =>
      `import process from "node:process";
if (typeof process.send !== "function") { console.log("NO CHANNEL"); Deno.exit(0); }
${messages.map((m) => `process.send(${m});`).join("\n")}
await new Promise((r) => setTimeout(r, 2000));
console.log("still running");
Deno.exit(0);
`;
    const violations: [string, string[]][] = [
      ["a bare string", ['"garbage"']],
      ["an array", ["[1, 2, 3]"]],
      ["an object without an id", ['{ method: "ListServices", request: {} }']],
      ["a negative id", ['{ id: -1, method: "ListServices", request: {} }']],
      ["a call with an extra key (headers, to smuggle an authorization)", ['{ id: 1000001, method: "ListServices", request: {}, headers: { authorization: "Bearer x" } }']],
      ["the same id twice while the first call is in flight", ['{ id: 1000001, method: "ExecuteQuery", request: { sql: "SELECT count(*) FROM range(100000000)" } }', '{ id: 1000001, method: "ListServices", request: {} }']],
      ["a credit beyond the stream window", ['{ id: 1000001, method: "StreamQuery", request: { sql: "SELECT 1" } }', "{ id: 1000001, credit: 100000 }"]],
    ];
    for (const [what, messages] of violations) {
      it(`${what}: the run is stopped with one line, exit 1`, async () => {
        const r = await attempt(send(...messages));
        expect(r.stdout).not.toContain("NO CHANNEL");
        expect(r.stdout).not.toContain("still running");
        expect(r.stderr).toMatch(/the script broke the SDK protocol \(.+\); the run was stopped/);
        expect(r.code).toBe(1);
      });
    }

    it("a 4 MiB message: the run is stopped, coral run does not hold it", async () => {
      const r = await attempt(send('{ id: 1000001, method: "ExecuteQuery", request: { sql: "x".repeat(4 << 20) } }'));
      expect(r.stderr).toMatch(/broke the SDK protocol \(sent a message longer than \d+ bytes\)/);
      expect(r.code).toBe(1);
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("64 MiB without a newline written to the channel's descriptor: stopped, coral run does not hold it", async () => {
      const r = await attempt(
        `${P}import { writeSync } from "node:fs";
await probe("raw", () => { const chunk = new TextEncoder().encode("x".repeat(1 << 20)); for (let i = 0; i < 64; i++) writeSync(3, chunk); return "written"; });
`,
      );
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
      // Either Deno does not let the script at the descriptor, or coral run ends the run.
      expect(r.stdout.includes("DENIED raw") || /broke the SDK protocol/.test(r.stderr), r.out).toBe(true);
    });

    it("bytes that are not JSON, on the channel's descriptor: the run is stopped or the write is refused", async () => {
      const r = await attempt(`${P}import { writeSync } from "node:fs";\nawait probe("raw", () => writeSync(3, new TextEncoder().encode("{not json\\n")));\nawait new Promise((r) => setTimeout(r, 1000));\nconsole.log("still running");\n`);
      expect(r.stdout.includes("DENIED raw") || /broke the SDK protocol \(sent a message that is not JSON\)/.test(r.stderr), r.out).toBe(true);
    });

    /** Sends one call and prints the parent's answer to it; the script then makes a proper SDK call. */
    const ask = (call: string) =>
      `${SDK}import process from "node:process";
const answer = await new Promise((res) => { process.on("message", (m: any) => { if (m.id === 1000001) res(m); }); process.send!(${call}); });
console.log(JSON.stringify(answer));
console.log("then " + (await coral.services.list()).length);
Deno.exit(0);
`;

    it("a method the API does not have: an invalid_argument answer; the run goes on", async () => {
      const r = await attempt(ask('{ id: 1000001, method: "DropAllTables", request: {} }'));
      expect(firstJson(r)).toMatchObject({ id: 1000001, error: { code: "invalid_argument" } });
      expect(r.stdout).toContain("then 6");
    });

    for (const method of ["grpc.health.v1.Health/Check", "opentelemetry.proto.collector.trace.v1.TraceService/Export", "__proto__"]) {
      it(`a call to "${method}" (another service, a path, a prototype name): invalid_argument, nothing reaches the colony`, async () => {
        const r = await attempt(ask(`{ id: 1000001, method: ${JSON.stringify(method)}, request: { resourceSpans: [] } }`));
        expect(firstJson(r)).toMatchObject({ id: 1000001, error: { code: "invalid_argument" } });
        expect(r.stdout).toContain("then 6");
      });
    }

    it("a request with unknown fields naming another colony: invalid_argument, and nothing connects there", async () => {
      const c = await canary();
      try {
        const r = await attempt(ask(`{ id: 1000001, method: "ListServices", request: { colony: "127.0.0.1:${c.port}", baseUrl: "http://127.0.0.1:${c.port}", authorization: "x" } }`));
        expect(firstJson(r)).toMatchObject({ id: 1000001, error: { code: "invalid_argument" } });
        expect(c.hits()).toBe(0);
      } finally {
        await c.close();
      }
    });

    it("the SDK offers no way to point coral run at another colony", async () => {
      const c = await canary();
      try {
        const r = await attempt(`${SDK}const m = coral as Record<string, unknown>;
if (typeof m.configure === "function") (m.configure as (o: object) => void)({ colony: "127.0.0.1:${c.port}", token: "x" });
console.log("configure " + typeof m.configure, (await coral.services.list()).length);
`);
        expect(r.stdout).toBe("configure undefined 6\n");
        expect(c.hits()).toBe(0);
      } finally {
        await c.close();
      }
    });

    it("100,000 calls sent without reading an answer: coral run stays bounded, the colony keeps serving", async () => {
      const worker = colony.workerPid();
      const r = await attempt(
        `import process from "node:process";
for (let i = 1; i <= 100000; i++) process.send!({ id: 2000000 + i, method: "ListServices", request: {} });
setTimeout(() => Deno.exit(0), 3000);
`,
        { memoryMb: 512 },
      );
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
      await expectColonyServing();
      // The same colony worker still serves: the flood did not make the colony restart it.
      expect(colony.workerPid()).toBe(worker);
    });

    it("a request nested 10,000 deep under --audit (Deno serialises it; Node's JSON.stringify overflows at ~5,000): coral run does not crash", async () => {
      const r = await attempt(
        `${SDK}import process from "node:process";
process.send!({ id: 1000001, method: "ExecuteQuery", request: { sql: "SELECT 1", pad: JSON.parse("[".repeat(10000) + "]".repeat(10000)) } });
await new Promise((r) => setTimeout(r, 1000));
console.log("then " + (await coral.services.list()).length);
Deno.exit(0);
`,
        { flags: (s) => ["--audit", join(s.dir, "audit.jsonl")] },
      );
      expect(r.stderr).not.toMatch(/Maximum call stack|internal error|^\s+at /m);
      // Either the call is refused and the run goes on, or coral run ends the run as a protocol breach.
      expect(r.stdout.includes("then 6") || /broke the SDK protocol/.test(r.stderr), r.out).toBe(true);
    });

    it("the script closes the channel, then calls the SDK: a clear error, not a hang", async () => {
      const r = await attempt(`${SDK}import process from "node:process";\nprocess.disconnect?.();\ntry { await coral.services.list(); console.log("answered"); } catch (e) { console.log("error " + (e as Error).name); }\n`, { timeoutSec: 20 });
      expect(r.code).not.toBe(124);
      // The SDK fails the call with a CoralError the script can catch (it does here), not Node's
      // "Channel closed" with a stack through the bundle.
      expect(r.stdout).toBe("error CoralError\n");
      expect(r.out).not.toMatch(/Channel closed|^\s+at /m);
    });
  });

  describe("resources: time and memory are bounded, and coral run stays small", () => {
    it("an infinite loop: stopped at the timeout, exit 124, no process left", async () => {
      const r = await attempt("while (true) {}\n", { timeoutSec: 2 });
      expect(r.stderr).toContain("script timed out after 2 s");
      expect(r.code).toBe(124);
    });

    it("a SIGTERM listener to outlive the timeout: killed anyway, exit 124", async () => {
      const r = await attempt('Deno.addSignalListener("SIGTERM", () => console.log("ignoring SIGTERM"));\nconsole.log("started");\nwhile (true) await new Promise((r) => setTimeout(r, 20));\n', { timeoutSec: 10 });
      expect(r.stdout).toContain("started");
      expect(r.stdout).toContain("ignoring SIGTERM");
      expect(r.code).toBe(124);
    });

    it("stopping itself with SIGSTOP to hang past the deadline: still ended at the timeout, exit 124, no process left", async () => {
      // Deno lets a process signal itself without run permission; a stopped process still dies of SIGKILL.
      const r = await attempt('console.log("stopping");\ntry { Deno.kill(Deno.pid, "SIGSTOP"); } catch (e) { console.log((e as Error).name); }\nwhile (true) {}\n', { timeoutSec: 4 });
      expect(r.stdout).toContain("stopping");
      expect(r.code).toBe(124);
    });

    const bombs: [string, string][] = [
      ["an array of objects growing without end", 'const a = [];\nwhile (true) a.push({ s: "x" + Math.random() });\n'],
      ["a string doubling (flattened, so that each copy is real)", 'let s = "x".repeat(1024);\nconst keep = [];\nwhile (true) { s = JSON.parse(JSON.stringify(s + s)); keep.push(s); }\n'],
      ["ArrayBuffers filled chunk by chunk (outside the V8 heap)", 'const held = [];\nlet mib = 0;\nwhile (mib < 3072) { const b = new Uint8Array(16 << 20); b.fill(1); held.push(b); mib += 16; }\nconsole.log("ESCAPED");\n'],
    ];
    for (const [what, source] of bombs) {
      it(`${what}: exit 137 with one clear line; coral run stays small`, async () => {
        const r = await attempt(source, { memoryMb: 64 });
        expect(r.stdout).not.toContain("ESCAPED");
        expect(r.stderr).toBe("coral: script exceeded its memory limit (64 MB)\n");
        expect(r.code).toBe(137);
        expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
      });
    }

    it("Workers from data: URLs, each allocating: stopped by the memory ceiling, no process left", async () => {
      const r = await attempt(
        `const code = "const held = []; while (true) { const b = new Uint8Array(32 << 20); b.fill(1); held.push(b); }";
for (let i = 0; i < 16; i++) new Worker("data:text/javascript," + encodeURIComponent(code), { type: "module" });
await new Promise((r) => setTimeout(r, 20000));
console.log("ESCAPED");
`,
        { memoryMb: 128, timeoutSec: 25 },
      );
      expect(r.stdout).not.toContain("ESCAPED");
      expect(r.code).not.toBe(0);
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("Workers spawning Workers (a fork bomb inside the isolate): stopped, no process left", async () => {
      const r = await attempt(
        `const code = "const spawn = () => { for (let i = 0; i < 4; i++) { try { new Worker(self.location ? self.location.href : import.meta.url, { type: 'module' }); } catch {} } }; spawn();";
const url = "data:text/javascript," + encodeURIComponent(code);
for (let i = 0; i < 8; i++) { try { new Worker(url, { type: "module" }); } catch (e) { console.log((e as Error).name); } }
await new Promise((r) => setTimeout(r, 5000));
console.log("done");
`,
        { memoryMb: 128, timeoutSec: 15 },
      );
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("64 MiB on stdout without a newline: all of it arrives, coral run stays small", async () => {
      const r = await attempt('const chunk = new TextEncoder().encode("x".repeat(1 << 20));\nfor (let i = 0; i < 64; i++) Deno.stdout.writeSync(chunk);\n', { timeoutSec: 40 });
      expect(r.stdoutBytes).toBe(64 * MiB);
      expect(r.code).toBe(0);
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("192 MiB on stderr without a newline: all of it arrives, coral run stays small", async () => {
      const r = await attempt('const chunk = new TextEncoder().encode("x".repeat(1 << 20));\nfor (let i = 0; i < 192; i++) Deno.stderr.writeSync(chunk);\n', { timeoutSec: 50 });
      expect(r.stderrBytes).toBeGreaterThanOrEqual(192 * MiB);
      expect(r.code).toBe(0);
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("a quarter of a million short lines on stderr: all arrive, coral run stays small", async () => {
      const r = await attempt('const chunk = new TextEncoder().encode("e\\n".repeat(1 << 16));\nfor (let i = 0; i < 4; i++) Deno.stderr.writeSync(chunk);\n', { timeoutSec: 50 });
      expect(r.stderrBytes).toBe(512 * 1024);
      expect(r.cliPeakMiB).toBeLessThan(benign.cliPeakMiB + CLI_HEADROOM_MIB);
    });

    it("two 100 KiB --params (together over what one environment variable may hold): a usage error naming the limit (exit 2), not E2BIG", async () => {
      const r = await attempt('console.log("RAN");\n', { flags: ["--param", `a=${"x".repeat(100 * 1024)}`, "--param", `b=${"x".repeat(100 * 1024)}`] });
      expect(r.code).toBe(2);
      expect(r.stdout).not.toContain("RAN");
      expect(r.stderr).toMatch(/--param/);
      expect(r.stderr).not.toMatch(/E2BIG|internal error/);
    });

    it("nine 120 KiB script arguments (over 1 MiB together): a usage error (exit 2), not E2BIG", async () => {
      const r = await attempt('console.log("RAN");\n', { args: Array.from({ length: 9 }, () => "y".repeat(120 * 1024)) });
      expect(r.code).toBe(2);
      expect(r.stderr).not.toMatch(/E2BIG|internal error/);
    });

    for (const name of ["has", "string", "__proto__"]) {
      it(`--param ${name}=1 does not replace the typed readers`, async () => {
        const r = await attempt(
          `${SDK}console.log(JSON.stringify([coral.params.has(${JSON.stringify(name)}), coral.params.string(${JSON.stringify(name)}), coral.params.number(${JSON.stringify(name)}), typeof coral.params.has, typeof coral.params.string, Object.keys(coral.params)]));\n`,
          { flags: ["--param", `${name}=1`] },
        );
        expect(r.stderr).toBe("");
        expect(JSON.parse(r.stdout)).toEqual([true, "1", 1, "function", "function", [name]]);
      });
    }
  });

  describe("process hygiene: when coral run goes, Deno goes and its directory with it", () => {
    const ready = (o: AttemptOptions & { signal: NodeJS.Signals }): AttemptOptions => ({
      ...o,
      timeoutSec: 60,
      onStdout: (text, child) => {
        if (text.includes("ready") && !(child as { signalled?: boolean }).signalled) {
          (child as { signalled?: boolean }).signalled = true;
          // The script printed from inside Deno: it is running.
          child.kill(o.signal);
        }
      },
    });
    const script = 'Deno.addSignalListener("SIGINT", () => {});\nconsole.log("ready");\nwhile (true) await new Promise((r) => setTimeout(r, 50));\n';

    for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129], ["SIGINT", 130]] as const) {
      it(`${signal} to coral run: Deno is stopped, the temp directory removed, exit ${code}`, async () => {
        const r = await attempt(script, ready({ signal }));
        expect(r.stdout).toContain("ready");
        expect(r.code).toBe(code);
      });
    }

    for (const signal of ["SIGKILL", "SIGQUIT"] as const) {
      it(`${signal} to coral run (no chance to clean up): Deno dies with it; the next run removes the directory left`, async () => {
        const r = await attempt(script, ready({ signal, killed: true }));
        expect(r.stdout).toContain("ready");
        // The kernel delivers the parent-death signal as coral run dies; the wait only bounds a failure.
        expect(await survivorsAfter(r, r.scene, 10_000)).toEqual([]);
        // The next run with the same TMPDIR sweeps what the killed one could not remove.
        const left = readdirSync(r.scene.tmp);
        const next = await runTracked({ args: ["run", "--colony", colony.addr, join(r.scene.proj, "inside.ts")], env: { CORAL_TOKEN: TOKEN, HOME: r.scene.home }, tmp: r.scene.tmp });
        expect(next.code, next.stderr).toBe(0);
        for (const name of left) expect(existsSync(join(r.scene.tmp, name)), name).toBe(false);
      });
    }
  });

  describe("output: the script cannot put words in coral run's mouth", () => {
    const uncaught: [string, string, RegExp][] = [
      ["net", 'await fetch("http://127.0.0.1:65000/");', /--allow-net/],
      ["env", 'Deno.env.get("HOME");', /--allow-env/],
      ["read", 'Deno.readTextFileSync("/etc/passwd");', /run again with the --allow-read/],
      ["run", 'new Deno.Command("/bin/true").outputSync();', /--allow-run/],
      ["sys", "Deno.hostname();", /--allow-sys/],
    ];
    for (const [kind, source, deno] of uncaught) {
      it(`an uncaught ${kind} permission error: Deno's "run again with --allow-${kind}" hint does not reach the user`, async () => {
        const r = await attempt(`${source}\n`);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/NotCapable/);
        expect(r.stderr).not.toMatch(deno);
        expect(r.stderr).not.toMatch(/run again with/);
      });
    }

    it("a fake permission prompt answered with y grants nothing", async () => {
      const r = await attempt(
        `${P}console.error("\\u26a0\\ufe0f  Deno requests read access to \\"/etc/passwd\\". Allow? [y/n/A] ");
const buf = new Uint8Array(16);
await Deno.stdin.read(buf);
await probe("read", () => Deno.readTextFileSync("/etc/passwd"));
`,
        { input: "y\n" },
      );
      expectDenied(r);
    });

    it("a script's stderr left mid-line does not run into coral run's own timeout line", async () => {
      const r = await attempt('Deno.stderr.writeSync(new TextEncoder().encode("\\x1b[8mhidden, and no newline"));\nwhile (true) {}\n', { timeoutSec: 8 });
      expect(r.code).toBe(124);
      expect(r.stderr).toMatch(/(^|\n)coral: script timed out after 8 s\n$/);
    });
  });
});
