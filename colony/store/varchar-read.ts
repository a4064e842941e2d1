// VARCHAR cells of a DuckDB vector as JS strings, in bulk.
//
// @duckdb/node-api reads a VARCHAR item at a time: a string over 12 bytes lives outside the vector,
// so each one costs a native call that wraps its bytes in a new ArrayBuffer, one TextDecoder call,
// and a BigInt test of the validity bit. For the stream benchmark's 32-character trace ids that was
// the colony's largest single cost (~0.7 µs a cell, 18 % of the colony's CPU while streaming).
// DuckDB mostly keeps such strings back to back (1M trace ids read from a table: ~2,400 runs of
// adjacent strings, not 1M), so this reads each run of adjacent strings with one native call and
// one decode. A run is only ever the strings' own bytes: string i+1 starts where string i ends, so
// nothing outside memory DuckDB handed out is read.
import bindings from "@duckdb/node-bindings";
import type { DuckDBVector } from "@duckdb/node-api";

/** The parts of DuckDBVarCharVector this reads (fields of the class, not declared public). */
interface VarCharInternals {
  dataView: DataView;
  validity: { data: BigUint64Array | null; offset: number };
  itemCount: number;
}

/** Each string_t is 16 bytes: length (4), then the inlined bytes (≤ 12) or a prefix (4) and a pointer (8). */
const STRING_T = 16;
const INLINE_MAX = 12;
const TWO_32 = 2 ** 32;

/** The cells of a VARCHAR vector (null for NULL), as DuckDBVarCharVector.toArray() would give them. */
export function readVarChar(vector: DuckDBVector): (string | null)[] {
  const v = vector as unknown as VarCharInternals;
  const dv = v.dataView;
  const n = v.itemCount;
  const valid = validityBits(v.validity);
  const inline = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
  const out = new Array<string | null>(n);
  let i = 0;
  while (i < n) {
    if (valid && !isValid(valid, v.validity.offset + i)) {
      out[i++] = null;
      continue;
    }
    const at = i * STRING_T;
    const len = dv.getUint32(at, true);
    if (len <= INLINE_MAX) {
      out[i++] = inline.toString("utf8", at + 4, at + 4 + len);
      continue;
    }
    // The run of adjacent out-of-line strings starting at i.
    let end = pointer(dv, at) + len;
    let total = len;
    let j = i + 1;
    while (j < n && (!valid || isValid(valid, v.validity.offset + j))) {
      const l = dv.getUint32(j * STRING_T, true);
      if (l <= INLINE_MAX || pointer(dv, j * STRING_T) !== end) break;
      end += l;
      total += l;
      j++;
    }
    const bytes = bindings.get_data_from_pointer(dv.buffer as ArrayBuffer, dv.byteOffset + at + 8, total);
    const run = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = run.toString("utf8");
    // All ASCII (one byte per character): cut the decoded text; otherwise decode each string.
    const ascii = text.length === total;
    let offset = 0;
    for (let k = i; k < j; k++) {
      const l = dv.getUint32(k * STRING_T, true);
      out[k] = ascii ? text.slice(offset, offset + l) : run.toString("utf8", offset, offset + l);
      offset += l;
    }
    i = j;
  }
  return out;
}

function pointer(dv: DataView, at: number): number {
  // Addresses fit 48 bits, so a double holds them exactly.
  return dv.getUint32(at + 12, true) * TWO_32 + dv.getUint32(at + 8, true);
}

function validityBits(validity: { data: BigUint64Array | null }): Uint8Array | undefined {
  const d = validity.data;
  return d ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : undefined;
}

/** DuckDB's validity mask is 64-bit words of bits, least significant first: on x64 that is byte b>>3, bit b&7. */
function isValid(bits: Uint8Array, bit: number): boolean {
  return (bits[bit >> 3]! & (1 << (bit & 7))) !== 0;
}
