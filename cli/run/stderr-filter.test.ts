import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { rewriteHints, StderrFilter } from "./stderr-filter.js";

function through(chunks: (string | Buffer)[], o: { plain?: boolean } = {}, exitedWithFailure = true) {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => (text += d.toString()));
  const filter = new StderrFilter(out, o);
  for (const c of chunks) filter.write(c);
  const oom = filter.finish(exitedWithFailure);
  return { text, oom };
}

describe("StderrFilter", () => {
  const coloured = ["\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: Uncaught Error: boom\n", "    at file:///x.ts:1:7\n"];

  it("passes colour codes through unless asked for plain text", () => {
    expect(through(coloured).text).toBe(coloured.join(""));
    expect(through(coloured, { plain: true }).text).toBe("error: Uncaught Error: boom\n    at file:///x.ts:1:7\n");
  });

  it("strips a colour code split across chunks", () => {
    const r = through(["progress \x1b[3", "2mok\x1b[0m"], { plain: true });
    expect(r.text).toBe("progress ok");
  });

  it("replaces V8's out-of-memory report, and only after a failed exit", () => {
    const report = ["\n", "<--- Last few GCs --->\n", "# Fatal JavaScript out of memory: heap limit\n", "==== C stack trace ====\n"];
    expect(through(["before\n", ...report])).toEqual({ text: "before\n", oom: true });
    expect(through(["before\n", ...report], {}, false).oom).toBe(false);
  });
});

describe("Deno's permission hints", () => {
  const denied = (kind: string, what: string) =>
    `error: Uncaught (in promise) NotCapable: Requires ${kind} access to "${what}", run again with the --allow-${kind} flag\n`;

  it("become what coral run offers instead", () => {
    const r = through([denied("read", "/etc/passwd"), denied("net", "example.com:80"), denied("env", "HOME")], {}, true);
    expect(r.text).toBe(
      'error: Uncaught (in promise) NotCapable: Requires read access to "/etc/passwd", coral run --allow-read DIR grants one directory\n' +
        'error: Uncaught (in promise) NotCapable: Requires net access to "example.com:80", scripts cannot open connections; use the @coral/sdk functions\n' +
        'error: Uncaught (in promise) NotCapable: Requires env access to "HOME", scripts can read only CORAL_PARAMS and CORAL_MODE\n',
    );
  });

  it("say why the Cache API fails instead of naming the run's temp directory", () => {
    const text = rewriteHints("error: Uncaught (in promise) Error: Failed to create cache storage directory /tmp/coral-run-1-2-x/deno_dir/location_data/web_cache/ab12\n");
    expect(text).toBe("error: Uncaught (in promise) Error: the Cache API is not available to scripts (they cannot write to disk)\n");
  });

  it("name no --allow flag for what scripts cannot have at all", () => {
    for (const kind of ["write", "run", "ffi", "sys", "all"]) {
      const text = rewriteHints(denied(kind, "x"));
      expect(text).toContain(`${kind} access is not available to scripts`);
      expect(text).not.toMatch(/--allow-/);
    }
  });
});

describe("StderrFilter on text without newlines", () => {
  // Each case writes 8 MiB in 64 KiB chunks and counts what the filter keeps between writes.
  const cases: [string, string][] = [
    ["plain text", "x"],
    ["text that starts like a V8 report", "#"],
    ["text that starts like an uncaught error", "error: Uncaught "],
    ["blank lines", "\n"],
  ];
  for (const [what, start] of cases) {
    it(`passes ${what} on without holding more than one line's worth`, () => {
      const out = new PassThrough();
      let written = 0;
      out.on("data", (d: Buffer) => (written += d.length));
      const filter = new StderrFilter(out);
      const chunk = (start === "\n" ? "\n" : "y").repeat(64 * 1024);
      let kept = 0;
      filter.write(start);
      for (let i = 0; i < 128; i++) {
        filter.write(chunk);
        kept = Math.max(kept, held(filter));
      }
      filter.finish(false);
      expect(kept).toBeLessThanOrEqual(2 * 64 * 1024 + start.length);
      expect(written).toBe(128 * chunk.length + start.length);
    });
  }

  it("keeps a character split across chunks whole", () => {
    const bytes = Buffer.from("héllo\n");
    expect(through([bytes.subarray(0, 2), bytes.subarray(2)]).text).toBe("héllo\n");
  });
});

/** Characters the filter holds back right now (its private buffers, read for the test's sake). */
function held(filter: StderrFilter): number {
  const f = filter as unknown as { partial: string; pendingBlank: string; held: string[] };
  return f.partial.length + f.pendingBlank.length + f.held.reduce((n, l) => n + l.length, 0);
}

describe("coral run's own lines", () => {
  const run = (plain: boolean, script: string) => {
    let text = "";
    const out = new PassThrough();
    out.on("data", (d: Buffer) => (text += d.toString()));
    const filter = new StderrFilter(out, { plain });
    filter.write(script);
    filter.finish(false);
    filter.ownLine("script timed out after 8 s");
    return text;
  };

  it("start on a fresh line after a script's last line without a newline", () => {
    expect(run(true, "progress 99%")).toBe("progress 99%\ncoral: script timed out after 8 s\n");
    expect(run(true, "done\n")).toBe("done\ncoral: script timed out after 8 s\n");
  });

  it("reset the script's text attributes on a terminal, so a hide-text escape cannot hide them", () => {
    expect(run(false, "\x1b[8mhidden")).toBe("\x1b[8mhidden\n\x1b[0mcoral: script timed out after 8 s\n");
  });
});
