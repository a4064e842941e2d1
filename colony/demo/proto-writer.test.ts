import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { ProtoWriter } from "./proto-writer.js";

// The reference is @bufbuild/protobuf's BinaryWriter: the same fields must give the same bytes.
describe("ProtoWriter", () => {
  it("writes scalars, strings and hex bytes exactly as BinaryWriter does", () => {
    const ours = new ProtoWriter(8).uint(1, 0).uint(2, 300).uint(3, Number.MAX_SAFE_INTEGER).bool(4, true).double(5, -1.5).string(6, "héllo ✓").hex(7, "00ff10ab").finish();
    const ref = new BinaryWriter()
      .tag(1, WireType.Varint).uint64(0)
      .tag(2, WireType.Varint).uint64(300)
      .tag(3, WireType.Varint).uint64(Number.MAX_SAFE_INTEGER)
      .tag(4, WireType.Varint).bool(true)
      .tag(5, WireType.Bit64).double(-1.5)
      .tag(6, WireType.LengthDelimited).string("héllo ✓")
      .tag(7, WireType.LengthDelimited).bytes(Uint8Array.from([0x00, 0xff, 0x10, 0xab]))
      .finish();
    expect([...ours]).toEqual([...ref]);
  });

  it("writes nanosecond timestamps beyond 2^53 exactly", () => {
    for (const [us, extra] of [[0, 0], [1_780_000_000_123_456, 0], [1_780_000_000_123_456, 987_654_321_012], [2 ** 32 - 1, 999], [18_446_744_073_709, 551_615]]) {
      const ours = new ProtoWriter().fixed64Ns(7, us!, extra!).finish();
      const ref = new BinaryWriter().tag(7, WireType.Bit64).fixed64(BigInt(us!) * 1000n + BigInt(extra!)).finish();
      expect([...ours], `${us} µs + ${extra} ns`).toEqual([...ref]);
    }
  });

  it("length-prefixes nested messages of every size, and grows past its first buffer", () => {
    for (const size of [0, 1, 127, 128, 16_383, 16_384, 300_000]) {
      const text = "x".repeat(size);
      const ours = new ProtoWriter(16).begin(1).begin(2).string(3, text).end().uint(4, 9).end().finish();
      const ref = new BinaryWriter().tag(1, WireType.LengthDelimited).fork()
        .tag(2, WireType.LengthDelimited).fork().tag(3, WireType.LengthDelimited).string(text).join()
        .tag(4, WireType.Varint).uint32(9).join().finish();
      expect(Buffer.from(ours).equals(Buffer.from(ref)), `nested string of ${size} bytes`).toBe(true);
    }
  });

  it("refuses unbalanced nesting", () => {
    expect(() => new ProtoWriter().end()).toThrow(/without begin/);
    expect(() => new ProtoWriter().begin(1).finish()).toThrow(/unclosed/);
  });
});
