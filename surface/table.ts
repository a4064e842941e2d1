// Result shapes of the raw-SQL functions. Kept free of imports: the SDK's type
// declarations must load in Deno without npm. The CLI renders table results with the
// same decoding (tableRows).

/** A result column of db.query / db.stream. */
export interface Column {
  name: string;
  type: string;
}

/** The result of db.query: rows as objects keyed by column name; iterable over the rows. */
export interface QueryResult<Row = Record<string, unknown>> extends Iterable<Row> {
  columns: Column[];
  rows: Row[];
  /** True when the colony cut the result at its row limit (10,000). */
  truncated: boolean;
}

/**
 * How a table response carries its cells (the `encoding` annotation of its rows field):
 * "list_values" — a list of rows, each the array of its cells (google.protobuf.ListValue);
 * "json_columns" — one JSON text, an array with one array of cells per column. Under `coral run`
 * a stream's batch arrives with that text already parsed (the pipe carries it as a JSON value),
 * so the column arrays are accepted as well.
 */
export type CellEncoding = "list_values" | "json_columns";

/** Where a table-shaped response keeps its parts; generated from the proto annotations. */
export interface TableFields {
  /** Response field (proto name) holding the cells. */
  rows: string;
  /** Response field (proto name) listing the columns, each with a `name`. */
  columns: string;
  encoding: CellEncoding;
  /** Response field (proto name), a bool: the colony cut the result at its row limit (the proto's cli.truncated). */
  truncated?: string;
}

/** Row objects keyed by column name from a response's cells, decoded per their encoding. */
export function tableRows(names: string[], cells: unknown, encoding: CellEncoding): Record<string, unknown>[] {
  if (encoding === "json_columns") {
    if (Array.isArray(cells)) return fromColumns(names, cells as unknown[][]);
    const text = typeof cells === "string" ? cells : "";
    return fromColumns(names, text ? (JSON.parse(text) as unknown[][]) : []);
  }
  const rows = (cells ?? []) as unknown[][];
  const out = new Array<Record<string, unknown>>(rows.length);
  const width = names.length;
  for (let r = 0; r < rows.length; r++) {
    const values = rows[r]!;
    const o: Record<string, unknown> = {};
    for (let c = 0; c < width; c++) o[names[c]!] = values[c];
    out[r] = o;
  }
  return out;
}

function fromColumns(names: string[], columns: unknown[][]): Record<string, unknown>[] {
  const count = columns[0]?.length ?? 0;
  const width = Math.min(names.length, columns.length);
  const out = new Array<Record<string, unknown>>(count);
  for (let r = 0; r < count; r++) {
    const o: Record<string, unknown> = {};
    for (let c = 0; c < width; c++) o[names[c]!] = columns[c]![r];
    out[r] = o;
  }
  return out;
}

function columnsOf(res: Record<string, unknown>, fields: TableFields): Column[] {
  return (res[fields.columns] ?? []) as unknown as Column[];
}

export function asTable<Row>(res: Record<string, unknown>, fields: TableFields): QueryResult<Row> {
  const columns = columnsOf(res, fields);
  const rows = tableRows(
    columns.map((c) => c.name),
    res[fields.rows],
    fields.encoding,
  ) as Row[];
  return {
    columns,
    rows,
    truncated: fields.truncated !== undefined && res[fields.truncated] === true,
    [Symbol.iterator]: () => rows[Symbol.iterator](),
  };
}

/** Batches of row objects from a streamed query; the columns come with the first response. */
export async function* asTableStream<Row>(responses: AsyncIterable<Record<string, unknown>>, fields: TableFields): AsyncGenerator<Row[]> {
  let names: string[] | undefined;
  for await (const res of responses) {
    const cols = columnsOf(res, fields);
    if (!names || (cols.length && names.length === 0)) names = cols.map((c) => c.name);
    yield tableRows(names, res[fields.rows], fields.encoding) as Row[];
  }
}
