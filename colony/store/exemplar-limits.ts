// How many exemplars each latency bucket keeps, in a module of its own: ClickHouse's reads
// (clickhouse/reads.ts) pick by it and must not load DuckDB, which colony/ingest/exemplars.ts,
// where DuckDB keeps them, does.

/** Spans kept per (minute, service, metric, bucket): enough to pick from, a bounded cost per bucket. */
export const EXEMPLARS_PER_BUCKET = 4;
