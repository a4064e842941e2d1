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

/**
 * What an engine lets user SQL name besides the colony's own tables; the judgement and its words
 * are shared (DuckDB here, ClickHouse in clickhouse/user-sql.ts), the names are the engine's.
 */
export interface NamePolicy {
  /** Schemas (databases, on ClickHouse) whose tables are the colony's; "" is an unqualified name. */
  ownSchemas: ReadonlySet<string>;
  /** Schemas whose system views are named without them (DuckDB's pg_catalog). */
  bareViewSchemas: ReadonlySet<string>;
  tableFunctions: ReadonlySet<string>;
  /** Views that describe the schema, as `schema.name` (or `name`, for bareViewSchemas), lower case. */
  systemViews: ReadonlySet<string>;
  /** Scalar functions refused because they reveal the server's configuration. */
  deniedFunctions: ReadonlySet<string>;
  /** What describes the colony's tables, for the refusal. */
  describedBy: string;
}

const DUCKDB: NamePolicy = {
  ownSchemas: new Set(["", "main"]),
  bareViewSchemas: new Set(["", "main", "pg_catalog"]),
  tableFunctions: TABLE_FUNCTIONS,
  systemViews: SYSTEM_VIEWS,
  deniedFunctions: SCALAR_FUNCTIONS_DENIED,
  describedBy: "information_schema and duckdb_tables/duckdb_columns describe them",
};

const tableList = (tables: ReadonlySet<string>) => [...tables].sort().join(", ");

/** Why a table function may not be called (`qualified`: named with a catalog), or undefined when it may. */
export function tableFunctionRefusal(name: string, tables: ReadonlySet<string>, policy: NamePolicy, qualified = false): string | undefined {
  if (!qualified && policy.tableFunctions.has(name.toLowerCase())) return undefined;
  return `table function ${name.toLowerCase()}() is not available to queries (it reads files or server state); use the colony's tables: ${tableList(tables)}`;
}

/** Why a scalar function may not be called, or undefined when it may. */
export function functionRefusal(name: string, policy: NamePolicy): string | undefined {
  if (!policy.deniedFunctions.has(name.toLowerCase())) return undefined;
  return `function ${name.toLowerCase()}() is not available to queries (it reveals the server's configuration)`;
}

/** Why a relation (a table or view, `schema.table` or bare) may not be read, or undefined when it may. */
export function relationRefusal(r: { schema: string; table: string }, tables: ReadonlySet<string>, ctes: ReadonlySet<string>, policy: NamePolicy): string | undefined {
  const table = r.table.toLowerCase();
  const schema = r.schema.toLowerCase();
  if (schema === "" && ctes.has(table)) return undefined;
  if (policy.ownSchemas.has(schema) && tables.has(table)) return undefined;
  const qualified = policy.bareViewSchemas.has(schema) ? table : `${schema}.${table}`;
  if (policy.systemViews.has(qualified)) return undefined;
  const shown = schema ? `${schema}.${table}` : table;
  // Only the file's own name: a path, even one the user typed, is not echoed into answers and logs.
  if (/[/\\.]/.test(table)) return `"${table.split(/[/\\]/).pop()}" looks like a file; queries read only the colony's tables: ${tableList(tables)}`;
  return `table "${shown}" is not available to queries; the colony's tables are ${tableList(tables)} (${policy.describedBy})`;
}

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
    const refusal = tableFunctionRefusal(name, tables, DUCKDB, catalog !== "" && catalog !== "system");
    if (refusal) return refusal;
    // Its arguments are expressions like any other.
    return walk(node.function.children, tables, database, ctes);
  }
  if (node.type === "BASE_TABLE") {
    const refusal = judgeRelation(node, tables, database, ctes);
    if (refusal) return refusal;
  }
  if (node.class === "FUNCTION") {
    const refusal = functionRefusal(lower(node.function_name), DUCKDB);
    if (refusal) return refusal;
  }
  for (const v of Object.values(node)) {
    const r = walk(v, tables, database, ctes);
    if (r) return r;
  }
  return undefined;
}

function judgeRelation(node: Node, tables: ReadonlySet<string>, database: string, ctes: ReadonlySet<string>): string | undefined {
  const catalog = lower(node.catalog_name);
  const schema = lower(node.schema_name);
  if (catalog !== "" && catalog !== database.toLowerCase() && !(catalog === "system" && schema !== "")) {
    return `"${catalog}" is not a database queries can read; use the colony's tables: ${tableList(tables)}`;
  }
  return relationRefusal({ schema, table: lower(node.table_name) }, tables, ctes, DUCKDB);
}

function lower(v: unknown): string {
  return typeof v === "string" ? v.toLowerCase() : "";
}

function isNode(v: unknown): v is Node {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
