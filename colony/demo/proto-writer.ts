/**
 * A protobuf writer for the load generator's hot path: one growing Buffer, strings and hex ids
 * written straight into it, nested messages length-prefixed in place. @bufbuild/protobuf/wire's
 * BinaryWriter (used everywhere else) collects bytes in arrays and copies every nested message,
 * which made `coral demo load` need more CPU per span than the colony it loads (18 µs vs ~15 µs),
 * so a 2-core machine could not offer the receiver more than ~65k spans/s.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
/** Bytes reserved for a nested message's length: a varint of up to 2^28 − 1 (256 MiB). */
const LEN_RESERVE = 4;
const TWO_32 = 2 ** 32;

export class ProtoWriter {
  private buf: Buffer;
  private pos = 0;
  private readonly open: number[] = [];

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private varint(v: number): void {
    // Values here are lengths, enums and non-negative safe integers.
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  uint(field: number, v: number): this {
    this.ensure(20);
    this.tag(field, WIRE_VARINT);
    this.varint(v);
    return this;
  }

  bool(field: number, v: boolean): this {
    return this.uint(field, v ? 1 : 0);
  }

  double(field: number, v: number): this {
    this.ensure(14);
    this.tag(field, WIRE_FIXED64);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /**
   * A fixed64 nanosecond timestamp, `us` microseconds plus `extraNs` nanoseconds, exact although
   * the sum exceeds 2^53: the halves are computed separately.
   */
  fixed64Ns(field: number, us: number, extraNs: number): this {
    this.ensure(14);
    this.tag(field, WIRE_FIXED64);
    const usHi = Math.floor(us / TWO_32);
    const lowNs = (us - usHi * TWO_32) * 1000 + extraNs; // < 2^53: exact
    const carry = Math.floor(lowNs / TWO_32);
    this.buf.writeUInt32LE(lowNs - carry * TWO_32, this.pos);
    this.buf.writeUInt32LE(usHi * 1000 + carry, this.pos + 4);
    this.pos += 8;
    return this;
  }

  string(field: number, s: string): this {
    const n = Buffer.byteLength(s, "utf8");
    this.ensure(n + 10);
    this.tag(field, WIRE_LEN);
    this.varint(n);
    this.pos += this.buf.write(s, this.pos, "utf8");
    return this;
  }

  /** A bytes field given as hex text (trace and span ids). */
  hex(field: number, hex: string): this {
    const n = hex.length >>> 1;
    this.ensure(n + 10);
    this.tag(field, WIRE_LEN);
    this.varint(n);
    this.pos += this.buf.write(hex, this.pos, "hex");
    return this;
  }

  /** Starts a nested message in `field`; `end()` closes it. */
  begin(field: number): this {
    this.ensure(10 + LEN_RESERVE);
    this.tag(field, WIRE_LEN);
    this.open.push(this.pos);
    this.pos += LEN_RESERVE;
    return this;
  }

  end(): this {
    const at = this.open.pop();
    if (at === undefined) throw new Error("ProtoWriter.end() without begin()");
    const bodyStart = at + LEN_RESERVE;
    const len = this.pos - bodyStart;
    if (len >= 2 ** 28) throw new RangeError(`nested message of ${len} bytes is too large`);
    // Write the length's varint, then close the gap the reservation left behind it.
    const save = this.pos;
    this.pos = at;
    this.varint(len);
    const lenBytes = this.pos - at;
    this.buf.copyWithin(this.pos, bodyStart, save);
    this.pos = save - (LEN_RESERVE - lenBytes);
    return this;
  }

  /** The message: a view of the writer's buffer, so write nothing more after this. */
  finish(): Buffer {
    if (this.open.length > 0) throw new Error("ProtoWriter.finish() with an unclosed nested message");
    return this.buf.subarray(0, this.pos);
  }
}
