export { Store } from "./store.js";
export { Queries, type ServiceRow, type TraceRow, type SystemMetrics } from "./queries.js";
export { SqlRunner, SqlRejected, type SqlColumn, type SqlValue, type SqlResult } from "./readonly-sql.js";
export { ALPHA, GAMMA, bucketIndex, bucketValue, quantileFromBuckets } from "./sketch.js";
export { DuckDBDialect } from "./dialect.js";
export { HTTP_SERVER_DURATION, type Database } from "./schema.js";
