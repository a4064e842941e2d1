import duckdb from "@duckdb/node-bindings";
import { DuckDBTypeId, type DuckDBDataChunk, type DuckDBListType, type DuckDBArrayType, type DuckDBStructType, type DuckDBType, type DuckDBMapType, type DuckDBUnionType } from "@duckdb/node-api";

/**
 * The wire size of each row of a result chunk, read from DuckDB's vectors without building a
 * single JS value: string lengths from their headers, list sizes from their entries. A user's
 * query can put a 100-million-element list or a 500 MB string in one cell; converting first and
 * measuring after would build the very value the byte cap exists to refuse (and the colony's heap
 * would not survive it). Sizes are those of the JSON the client receives, give or take quoting.
 *
 * Returns undefined as soon as the rows provably exceed `budget` bytes (every element costs at
 * least two), so a huge nested cell is refused without walking it.
 */
export function rowWireSizes(chunk: DuckDBDataChunk, types: readonly DuckDBType[], rows: number, budget: number): Float64Array | undefined {
  const out = new Float64Array(rows).fill(2);
  for (let c = 0; c < types.length; c++) {
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, c);
    const sizes = elementSizes(vector, types[c]!, rows, budget, true);
    if (!sizes) return undefined;
    for (let r = 0; r < rows; r++) out[r] += sizes[r]!;
  }
  return out;
}

type Vector = ReturnType<typeof duckdb.data_chunk_get_vector>;

/** Bytes a JSON number, boolean or instant takes; top-level cells also pay google.protobuf.Value's framing. */
function fixedSize(type: DuckDBType, topLevel: boolean): number {
  if (topLevel) return 25;
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return 6;
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.USMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.UINTEGER:
      return 12;
    default:
      return 32;
  }
}

function elementSizes(vector: Vector, type: DuckDBType, count: number, budget: number, topLevel: boolean): Float64Array | undefined {
  const out = new Float64Array(count);
  if (count === 0) return out;
  // The validity mask is read here, not through one native call per element (5M of those take seconds).
  const mask = duckdb.vector_get_validity(vector, Math.ceil(count / 64) * 8);
  const valid = mask ? (i: number) => ((mask[i >> 3]! >> (i & 7)) & 1) === 1 : () => true;
  switch (type.typeId) {
    case DuckDBTypeId.VARCHAR:
    case DuckDBTypeId.BLOB:
    case DuckDBTypeId.BIT:
    case DuckDBTypeId.BIGNUM: {
      // duckdb_string_t: a 4-byte length, then the bytes inline or a pointer; 16 bytes each.
      const data = duckdb.vector_get_data(vector, count * 16);
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      // BLOBs travel as escaped text (\xAB), up to four characters a byte.
      const factor = type.typeId === DuckDBTypeId.BLOB ? 4 : 1;
      let total = 0;
      for (let i = 0; i < count; i++) {
        out[i] = valid(i) ? view.getUint32(i * 16, true) * factor + 3 : 5;
        total += out[i]!;
        if (total > budget) return undefined;
      }
      return out;
    }
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.MAP: {
      const entries = duckdb.vector_get_data(vector, count * 16);
      const pairs = new BigUint64Array(entries.buffer, entries.byteOffset, count * 2);
      let end = 0;
      for (let i = 0; i < count; i++) if (valid(i)) end = Math.max(end, Number(pairs[i * 2]! + pairs[i * 2 + 1]!));
      if (end * 2 > budget) return undefined;
      const childType = type.typeId === DuckDBTypeId.LIST ? (type as DuckDBListType).valueType : mapEntryType(type as DuckDBMapType);
      const child = elementSizes(duckdb.list_vector_get_child(vector), childType, end, budget, false);
      if (!child) return undefined;
      const prefix = prefixSums(child);
      let total = 0;
      for (let i = 0; i < count; i++) {
        if (!valid(i)) out[i] = 5;
        else {
          const from = Number(pairs[i * 2]!);
          const len = Number(pairs[i * 2 + 1]!);
          out[i] = prefix[from + len]! - prefix[from]! + len + 2;
        }
        total += out[i]!;
        if (total > budget) return undefined;
      }
      return out;
    }
    case DuckDBTypeId.ARRAY: {
      const t = type as DuckDBArrayType;
      const n = count * t.length;
      if (n * 2 > budget) return undefined;
      const child = elementSizes(duckdb.array_vector_get_child(vector), t.valueType, n, budget, false);
      if (!child) return undefined;
      for (let i = 0; i < count; i++) {
        let s = t.length + 2;
        for (let k = 0; k < t.length; k++) s += child[i * t.length + k]!;
        out[i] = valid(i) ? s : 5;
      }
      return out;
    }
    case DuckDBTypeId.STRUCT:
    case DuckDBTypeId.UNION: {
      const t = type as DuckDBStructType | DuckDBUnionType;
      const entries: { name: string; type: DuckDBType }[] =
        type.typeId === DuckDBTypeId.STRUCT
          ? (t as DuckDBStructType).entryNames.map((name, k) => ({ name, type: (t as DuckDBStructType).entryTypes[k]! }))
          : // A UNION is stored as a struct whose first child is the tag.
            [{ name: "", type: { typeId: DuckDBTypeId.UTINYINT } as DuckDBType }].concat(
              (t as DuckDBUnionType).memberTags.map((name, k) => ({ name, type: (t as DuckDBUnionType).memberTypes[k]! })),
            );
      out.fill(2);
      for (let k = 0; k < entries.length; k++) {
        const child = elementSizes(duckdb.struct_vector_get_child(vector, k), entries[k]!.type, count, budget, false);
        if (!child) return undefined;
        for (let i = 0; i < count; i++) out[i] += child[i]! + entries[k]!.name.length + 4;
      }
      let total = 0;
      for (let i = 0; i < count; i++) {
        if (!valid(i)) out[i] = 5;
        total += out[i]!;
      }
      return total > budget ? undefined : out;
    }
    default: {
      const size = fixedSize(type, topLevel);
      if (count * (topLevel ? 5 : 2) > budget) return undefined;
      for (let i = 0; i < count; i++) out[i] = valid(i) ? size : 5;
      return out;
    }
  }
}

function mapEntryType(t: DuckDBMapType): DuckDBType {
  return { typeId: DuckDBTypeId.STRUCT, entryNames: ["key", "value"], entryTypes: [t.keyType, t.valueType] } as unknown as DuckDBType;
}

function prefixSums(a: Float64Array): Float64Array {
  const p = new Float64Array(a.length + 1);
  for (let i = 0; i < a.length; i++) p[i + 1] = p[i]! + a[i]!;
  return p;
}
