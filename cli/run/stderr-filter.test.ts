import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { StderrFilter } from "./stderr-filter.js";

function through(chunks: string[], o: { plain?: boolean } = {}, exitedWithFailure = true) {
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
