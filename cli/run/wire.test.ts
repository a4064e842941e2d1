import { describe, expect, it } from "vitest";
import { frame, LineReader, MAX_DEPTH, ProtocolError } from "./wire.js";

const all = (r: LineReader) => {
  const out: unknown[] = [];
  for (let m = r.next(); m !== undefined; m = r.next()) out.push(m);
  return out;
};

describe("LineReader", () => {
  it("splits newline-delimited JSON, across and within chunks", () => {
    const r = new LineReader(100);
    r.push(Buffer.from('{"id":1}\n{"id"'));
    expect(all(r)).toEqual([{ id: 1 }]);
    r.push(Buffer.from(':2}\n{"id":3}\n'));
    expect(all(r)).toEqual([{ id: 2 }, { id: 3 }]);
    expect(r.pending).toBe(0);
  });

  it("keeps multi-byte characters split between chunks intact", () => {
    const r = new LineReader(100);
    const bytes = Buffer.from(frame({ s: "µs — ✓" }));
    r.push(bytes.subarray(0, 5));
    r.push(bytes.subarray(5));
    expect(all(r)).toEqual([{ s: "µs — ✓" }]);
  });

  it("refuses a line over the limit as soon as it is over, without waiting for its end", () => {
    const r = new LineReader(16);
    r.push(Buffer.from("x".repeat(10)));
    expect(() => r.push(Buffer.from("y".repeat(10)))).toThrow(ProtocolError);
    const complete = new LineReader(16);
    complete.push(Buffer.from(`${"z".repeat(20)}\n`));
    expect(() => complete.next()).toThrow(/longer than 16 bytes/);
  });

  it("a line of exactly the limit is fine", () => {
    const r = new LineReader(8);
    r.push(Buffer.from('"abcdef"\n'));
    expect(r.next()).toBe("abcdef");
  });

  it("refuses text that is not JSON", () => {
    const r = new LineReader(100);
    r.push(Buffer.from("hello\n"));
    expect(() => r.next()).toThrow(/not JSON/);
  });

  it("refuses nesting past MAX_DEPTH, counting brackets in strings for nothing", () => {
    const r = new LineReader(1_000_000);
    const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    r.push(Buffer.from(`${deep(MAX_DEPTH)}\n${JSON.stringify({ s: "[[[[".repeat(100) })}\n${deep(10_000)}\n`));
    expect(r.next()).toBeInstanceOf(Array);
    expect(r.next()).toEqual({ s: "[[[[".repeat(100) });
    expect(() => r.next()).toThrow(/nested deeper than 64 levels/);
  });

  it("holds back what the caller has not asked for: lines stay in the reader until next()", () => {
    const r = new LineReader(100);
    r.push(Buffer.from('1\n2\n3\n'));
    expect(r.next()).toBe(1);
    expect(r.pending).toBe(4);
  });
});
