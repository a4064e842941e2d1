/**
 * What user SQL may name. The instance already refuses the network, other files, extensions and
 * settings changes; this closes what those switches leave open, because they make exceptions for
 * the colony's own database: `read_blob`/`read_text` still read its file and WAL, `checkpoint()`
 * still writes it, and `current_setting`, `duckdb_settings()`, `duckdb_databases` or `pg_settings`
 * reveal server paths. Rather than chase such names one by one, relations and table functions are
 * allow-listed: the colony's tables, the SQL's own CTEs, schema introspection, and generators.
 *
 * The check reads DuckDB's own parse tree (`json_serialize_sql`), so spelling, quoting, case and
 * nesting (subqueries, CTEs, lateral joins, function arguments) cannot hide a name. Views are
 * expanded only at bind time, so a view is judged by its name, which is why system views are
 * allow-listed by name too.
 */

/** DuckDB's schema introspection: each a table function, and a system view of the same name. */
const INTROSPECTION = [
  "duckdb_tables",
  "duckdb_columns",
  "duckdb_views",
  "duckdb_indexes",
  "duckdb_constraints",
  "duckdb_schemas",
  "duckdb_types",
  "duckdb_functions",
  "duckdb_keywords",
];

/** Table functions a query may call: generators, unnesting, and read-only schema introspection. */
const TABLE_FUNCTIONS = new Set(["range", "generate_series", "unnest", "json_each", "json_tree", ...INTROSPECTION, "pragma_table_info", "pragma_show"]);

/** System views that describe the schema (and nothing of the server). */
const SYSTEM_VIEWS = new Set([
  ...INTROSPECTION,
  "information_schema.tables",
  "information_schema.columns",
  "information_schema.schemata",
  "information_schema.views",
  "information_schema.table_constraints",
  "information_schema.key_column_usage",
  "information_schema.referential_constraints",
  "information_schema.constraint_column_usage",
  "information_schema.check_constraints",
]);

/** Scalar functions that read the server's configuration (paths, memory, threads). */
const SCALAR_FUNCTIONS_DENIED = new Set(["current_setting", "getvariable"]);

export interface PolicyVerdict {
  ok: boolean;
  /** Why not, in words a user can act on. */
  reason?: string;
}

type Node = { [key: string]: unknown };

/**
 * Judges a parse tree from `json_serialize_sql` against the allow-lists. `tables` are the colony's
 * own tables, queryable by name (optionally as main.x or DB.main.x).
 */
export function judgeParseTree(tree: unknown, tables: ReadonlySet<string>, database: string): PolicyVerdict {
  const cteNames = new Set<string>();
  collectCtes(tree, cteNames);
  const refusal = walk(tree, tables, database, cteNames);
  return refusal ? { ok: false, reason: refusal } : { ok: true };
}

function collectCtes(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) collectCtes(n, into);
    return;
  }
  if (!isNode(node)) return;
  const map = node.cte_map;
  if (isNode(map) && Array.isArray(map.map)) {
    for (const entry of map.map) if (isNode(entry) && typeof entry.key === "string") into.add(entry.key.toLowerCase());
  }
  for (const v of Object.values(node)) collectCtes(v, into);
}

function walk(node: unknown, tables: ReadonlySet<string>, database: string, ctes: ReadonlySet<string>): string | undefined {
  if (Array.isArray(node)) {
    for (const n of node) {
      const r = walk(n, tables, database, ctes);
      if (r) return r;
    }
    return undefined;
  }
  if (!isNode(node)) return undefined;

  if (node.type === "TABLE_FUNCTION" && isNode(node.function)) {
    const name = lower(node.function.function_name);
    const catalog = lower(node.function.catalog);
    if (!TABLE_FUNCTIONS.has(name) || (catalog !== "" && catalog !== "system")) {
      return `table function ${name}() is not available to queries (it reads files or server state); use the colony's tables: ${[...tables].sort().join(", ")}`;
    }
    // Its arguments are expressions like any other.
    return walk(node.function.children, tables, database, ctes);
  }
  if (node.type === "BASE_TABLE") {
    const refusal = judgeRelation(node, tables, database, ctes);
    if (refusal) return refusal;
  }
  if (node.class === "FUNCTION" && SCALAR_FUNCTIONS_DENIED.has(lower(node.function_name))) {
    return `function ${lower(node.function_name)}() is not available to queries (it reveals the server's configuration)`;
  }
  for (const v of Object.values(node)) {
    const r = walk(v, tables, database, ctes);
    if (r) return r;
  }
  return undefined;
}

function judgeRelation(node: Node, tables: ReadonlySet<string>, database: string, ctes: ReadonlySet<string>): string | undefined {
  const table = lower(node.table_name);
  const schema = lower(node.schema_name);
  const catalog = lower(node.catalog_name);
  if (catalog !== "" && catalog !== database.toLowerCase() && !(catalog === "system" && schema !== "")) {
    return `"${catalog}" is not a database queries can read; use the colony's tables: ${[...tables].sort().join(", ")}`;
  }
  if (schema === "" && ctes.has(table)) return undefined;
  if ((schema === "" || schema === "main") && tables.has(table)) return undefined;
  const qualified = schema === "" || schema === "main" || schema === "pg_catalog" ? table : `${schema}.${table}`;
  if (SYSTEM_VIEWS.has(qualified)) return undefined;
  const shown = schema ? `${schema}.${table}` : table;
  // Only the file's own name: a path, even one the user typed, is not echoed into answers and logs.
  if (/[/\\.]/.test(table)) return `"${table.split(/[/\\]/).pop()}" looks like a file; queries read only the colony's tables: ${[...tables].sort().join(", ")}`;
  return `table "${shown}" is not available to queries; the colony's tables are ${[...tables].sort().join(", ")} (information_schema and duckdb_tables/duckdb_columns describe them)`;
}

function lower(v: unknown): string {
  return typeof v === "string" ? v.toLowerCase() : "";
}

function isNode(v: unknown): v is Node {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
