// Result shapes of the raw-SQL functions. Kept free of imports: the SDK's type
// declarations must load in Deno without npm.

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

function rowObjects(names: string[], rows: unknown[]): Record<string, unknown>[] {
  return rows.map((values) => {
    const o: Record<string, unknown> = {};
    names.forEach((n, i) => (o[n] = (values as unknown[])[i]));
    return o;
  });
}

export function asTable<Row>(res: Record<string, unknown>): QueryResult<Row> {
  const columns = (res.columns ?? []) as unknown as Column[];
  const rows = rowObjects(
    columns.map((c) => c.name),
    (res.rows ?? []) as unknown[],
  ) as Row[];
  return {
    columns,
    rows,
    truncated: res.truncated === true,
    [Symbol.iterator]: () => rows[Symbol.iterator](),
  };
}

/** Batches of row objects from a streamed query. */
export async function* asTableStream<Row>(responses: AsyncIterable<Record<string, unknown>>): AsyncGenerator<Row[]> {
  let names: string[] | undefined;
  for await (const res of responses) {
    const cols = (res.columns ?? []) as unknown as Column[];
    if (!names || (cols.length && names.length === 0)) names = cols.map((c) => c.name);
    yield rowObjects(names, (res.rows ?? []) as unknown[]) as Row[];
  }
}
