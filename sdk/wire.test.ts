import { describe, expect, it } from "vitest";
import { fromWire, requestToWire, toWire } from "./wire.js";

/** What the script gets for a plain value the parent sends: through JSON text, as on the pipe. */
const roundTrip = (v: unknown) => fromWire(JSON.parse(JSON.stringify(toWire(v))));

describe("plain values on the wire", () => {
  it("passes JSON values through untouched", () => {
    const v = { a: 1, b: "x", c: [true, null, 2.5, { d: [] }], e: {} };
    expect(toWire(v)).toEqual(v);
    expect(roundTrip(v)).toEqual(v);
  });

  it("carries what JSON cannot: Dates, NaN, ±Infinity, -0", () => {
    const when = new Date("2026-11-30T12:34:56.789Z");
    const out = roundTrip({ when, bad: new Date(NaN), nan: NaN, inf: Infinity, ninf: -Infinity, nz: -0, list: [when, NaN] }) as Record<string, unknown>;
    expect(out.when).toBeInstanceOf(Date);
    expect((out.when as Date).getTime()).toBe(when.getTime());
    expect(Number.isNaN((out.bad as Date).getTime())).toBe(true);
    expect(out.nan).toBeNaN();
    expect(out.inf).toBe(Infinity);
    expect(out.ninf).toBe(-Infinity);
    expect(Object.is(out.nz, -0)).toBe(true);
    expect((out.list as unknown[])[0]).toEqual(when);
    expect((out.list as unknown[])[1]).toBeNaN();
  });

  it("an object with its own \"$\" key is not mistaken for a tag", () => {
    const v = { $: ["date", 0], inner: { $: "x", when: new Date(5) } };
    const out = roundTrip(v) as { $: unknown; inner: { $: unknown; when: Date } };
    expect(out.$).toEqual(["date", 0]);
    expect(out.inner.$).toBe("x");
    expect(out.inner.when.getTime()).toBe(5);
  });

  it("refuses values a plain result never holds, instead of sending something else", () => {
    expect(() => toWire({ a: undefined })).toThrow(/undefined/);
    expect(() => toWire(1n)).toThrow(/bigint/);
    expect(() => toWire(() => 1)).toThrow(/function/);
  });

  it("a malformed tag is an error, not a value", () => {
    expect(() => fromWire({ $: ["nope", 1] })).toThrow(/unknown tag/);
    expect(() => fromWire({ $: 3 })).toThrow(/malformed/);
  });
});

describe("requests", () => {
  it("drop undefined and spell non-finite numbers as proto3 JSON does", () => {
    expect(requestToWire({ service: "a", namespace: undefined, percentile: NaN, x: Infinity, y: -Infinity, n: 3 })).toEqual({
      service: "a",
      percentile: "NaN",
      x: "Infinity",
      y: "-Infinity",
      n: 3,
    });
  });
});
