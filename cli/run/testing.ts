// Helpers shared by the launcher's tests: temp script directories, a stub SDK, captured output
// and loopback HTTP servers standing in for the colony and for "somewhere else".
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PassThrough } from "node:stream";
import { runScript, type RunOptions } from "./launcher.js";

export interface Sandbox {
  /** Temp root; holds `sdk/`, `proj/` (the scripts' directory) and anything "outside". */
  root: string;
  proj: string;
  sdk: string;
  /** Writes `rel` under the root; returns its absolute path. */
  file(rel: string, text: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** The SDK lives in its own directory: everything in the SDK's directory may be imported. */
export async function makeSandbox(): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), "coral-run-test-"));
  const file = async (rel: string, text: string) => {
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, text);
    return p;
  };
  const sdk = await file("sdk/coral-sdk.js", 'export const ping = () => "pong";\n');
  await file("sdk/coral-sdk.d.ts", "export declare function ping(): string;\n");
  const proj = join(root, "proj");
  await mkdir(proj);
  return { root, proj, sdk, file, cleanup: () => rm(root, { recursive: true, force: true }) };
}

export interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

export function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

/** Runs `script` (a path) through runScript with test-sized limits and captured output. */
export async function run(
  sb: Sandbox,
  script: string,
  o: Partial<RunOptions> = {},
  signal?: AbortSignal,
): Promise<Captured> {
  const out = capture();
  const err = capture();
  const code = await runScript(
    {
      script,
      args: [],
      colony: "127.0.0.1:9",
      params: {},
      timeoutSec: 20,
      memoryMb: 64,
      sdkModule: sb.sdk,
      stdout: out.stream,
      stderr: err.stream,
      stdin: emptyStdin(),
      ...o,
    },
    signal,
  );
  return { code, stdout: out.text(), stderr: err.text() };
}

/** Writes `source` as proj/<name> and runs it. */
export async function runSource(
  sb: Sandbox,
  source: string,
  o: Partial<RunOptions> = {},
  name = "main.ts",
): Promise<Captured> {
  return run(sb, await sb.file(`proj/${name}`, source), o);
}

export function emptyStdin(text = ""): PassThrough {
  const s = new PassThrough();
  s.end(text);
  return s;
}

/** A loopback HTTP server answering every request with `body`; counts the requests it saw. */
export async function httpServer(body: string): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    res.setHeader("content-type", "text/plain");
    res.end(`${body} ${req.headers.authorization ?? ""}`.trim());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
