// Protobuf's wire format by hand, for tests that need bodies too large or too malformed to build
// through generated messages (16 MiB of empty spans, nesting millions deep).

/** A base-128 varint; safe for any non-negative integer below 2^53. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited field (wire type 2). */
export const ld = (field: number, payload: Buffer): Buffer => Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
