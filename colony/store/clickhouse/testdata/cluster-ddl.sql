CREATE DATABASE IF NOT EXISTS `coral` ON CLUSTER `prod`;

CREATE TABLE IF NOT EXISTS `coral`.`spans_local` ON CLUSTER `prod` (
  `trace_id` String,
  `span_id` String,
  `parent_span_id` Nullable(String),
  `service_name` String,
  `name` String,
  `kind` String,
  `start_time` DateTime64(6, 'UTC'),
  `duration_ns` Int64,
  `status_code` String,
  `http_status_code` Nullable(Int32),
  `attributes` String,
  INDEX trace_id_bf trace_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/spans_local', '{replica}')
PARTITION BY toDate(start_time)
ORDER BY (service_name, start_time, trace_id);

CREATE TABLE IF NOT EXISTS `coral`.`spans` ON CLUSTER `prod` AS `coral`.`spans_local`
ENGINE = Distributed(`prod`, `coral`, `spans_local`, cityHash64(trace_id));

CREATE TABLE IF NOT EXISTS `coral`.`span_attributes_local` ON CLUSTER `prod` (
  `service_name` String,
  `start_time` DateTime64(6, 'UTC'),
  `trace_id` String,
  `span_id` String,
  `kind` String,
  `duration_ns` Int64,
  `failed` Bool,
  `key` String,
  `value` String,
  `resource` Bool,
  INDEX trace_id_bf trace_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/span_attributes_local', '{replica}')
PARTITION BY toDate(start_time)
ORDER BY (service_name, kind, key, start_time);

CREATE TABLE IF NOT EXISTS `coral`.`span_attributes` ON CLUSTER `prod` AS `coral`.`span_attributes_local`
ENGINE = Distributed(`prod`, `coral`, `span_attributes_local`, cityHash64(trace_id));

CREATE TABLE IF NOT EXISTS `coral`.`service_latency_buckets_local` ON CLUSTER `prod` (
  `timestamp` DateTime64(6, 'UTC'),
  `service_name` String,
  `metric` String,
  `bucket` Int32,
  `count` UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/coral/service_latency_buckets_local', '{replica}', count)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (service_name, metric, timestamp, bucket);

CREATE TABLE IF NOT EXISTS `coral`.`service_latency_buckets` ON CLUSTER `prod` AS `coral`.`service_latency_buckets_local`
ENGINE = Distributed(`prod`, `coral`, `service_latency_buckets_local`, cityHash64(service_name));

CREATE TABLE IF NOT EXISTS `coral`.`service_summary_parts_local` ON CLUSTER `prod` (
  `timestamp` DateTime64(6, 'UTC'),
  `service_name` String,
  `metric` String,
  `request_count` SimpleAggregateFunction(sum, UInt64),
  `error_count` SimpleAggregateFunction(sum, UInt64),
  `sum_duration_ns` SimpleAggregateFunction(sum, Float64),
  `min_duration_ns` SimpleAggregateFunction(min, Int64),
  `max_duration_ns` SimpleAggregateFunction(max, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/coral/service_summary_parts_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (service_name, metric, timestamp);

CREATE TABLE IF NOT EXISTS `coral`.`service_summary_parts` ON CLUSTER `prod` AS `coral`.`service_summary_parts_local`
ENGINE = Distributed(`prod`, `coral`, `service_summary_parts_local`, cityHash64(service_name));

CREATE TABLE IF NOT EXISTS `coral`.`trace_summary_parts_local` ON CLUSTER `prod` (
  `trace_id` String,
  `service_name` String,
  `root` SimpleAggregateFunction(min, Tuple(Int64, Int64, String)),
  `start_time` SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
  `end_ns` SimpleAggregateFunction(max, Int64),
  `span_count` SimpleAggregateFunction(sum, UInt64),
  `error` SimpleAggregateFunction(max, UInt8)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/coral/trace_summary_parts_local', '{replica}')
ORDER BY (trace_id, service_name);

CREATE TABLE IF NOT EXISTS `coral`.`trace_summary_parts` ON CLUSTER `prod` AS `coral`.`trace_summary_parts_local`
ENGINE = Distributed(`prod`, `coral`, `trace_summary_parts_local`, cityHash64(trace_id));

CREATE TABLE IF NOT EXISTS `coral`.`latency_exemplar_parts_local` ON CLUSTER `prod` (
  `timestamp` DateTime64(6, 'UTC'),
  `service_name` String,
  `metric` String,
  `bucket` Int32,
  `trace_id` String,
  `span_id` String,
  `start_time` DateTime64(6, 'UTC'),
  `duration_ns` Int64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/latency_exemplar_parts_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (service_name, metric, timestamp, bucket);

CREATE TABLE IF NOT EXISTS `coral`.`latency_exemplar_parts` ON CLUSTER `prod` AS `coral`.`latency_exemplar_parts_local`
ENGINE = Distributed(`prod`, `coral`, `latency_exemplar_parts_local`, cityHash64(service_name));

CREATE TABLE IF NOT EXISTS `coral`.`host_samples_local` ON CLUSTER `prod` (
  `timestamp` DateTime64(6, 'UTC'),
  `host_name` String,
  `service_name` String,
  `cpu_percent` Nullable(Float64),
  `memory_percent` Nullable(Float64),
  `memory_used_bytes` Nullable(Int64),
  `memory_total_bytes` Nullable(Int64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/host_samples_local', '{replica}')
PARTITION BY toDate(timestamp)
ORDER BY (service_name, host_name, timestamp);

CREATE TABLE IF NOT EXISTS `coral`.`host_samples` ON CLUSTER `prod` AS `coral`.`host_samples_local`
ENGINE = Distributed(`prod`, `coral`, `host_samples_local`, cityHash64(host_name));

CREATE TABLE IF NOT EXISTS `coral`.`services_parts_local` ON CLUSTER `prod` (
  `name` String,
  `namespace` SimpleAggregateFunction(max, Tuple(DateTime64(6, 'UTC'), String)),
  `region` SimpleAggregateFunction(max, Tuple(DateTime64(6, 'UTC'), String)),
  `first_seen` SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
  `last_seen` SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/coral/services_parts_local', '{replica}')
ORDER BY name;

CREATE TABLE IF NOT EXISTS `coral`.`services_parts` ON CLUSTER `prod` AS `coral`.`services_parts_local`
ENGINE = Distributed(`prod`, `coral`, `services_parts_local`, cityHash64(name));

CREATE TABLE IF NOT EXISTS `coral`.`service_instances_parts_local` ON CLUSTER `prod` (
  `service_name` String,
  `instance_id` String,
  `last_seen` SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/coral/service_instances_parts_local', '{replica}')
ORDER BY (service_name, instance_id);

CREATE TABLE IF NOT EXISTS `coral`.`service_instances_parts` ON CLUSTER `prod` AS `coral`.`service_instances_parts_local`
ENGINE = Distributed(`prod`, `coral`, `service_instances_parts_local`, cityHash64(service_name));

CREATE TABLE IF NOT EXISTS `coral`.`histogram_streams_local` ON CLUSTER `prod` (
  `stream` String,
  `start_ns` String,
  `sum_ns` Float64,
  `buckets` String,
  `updated_at` DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/coral/histogram_streams_local', '{replica}', updated_at)
ORDER BY stream;

CREATE TABLE IF NOT EXISTS `coral`.`histogram_streams` ON CLUSTER `prod` AS `coral`.`histogram_streams_local`
ENGINE = Distributed(`prod`, `coral`, `histogram_streams_local`, cityHash64(stream));

CREATE TABLE IF NOT EXISTS `coral`.`schema_migrations_local` ON CLUSTER `prod` (
  `version` Int32,
  `applied_at` DateTime64(6, 'UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/schema_migrations_local', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS `coral`.`schema_migrations` ON CLUSTER `prod` AS `coral`.`schema_migrations_local`
ENGINE = Distributed(`prod`, `coral`, `schema_migrations_local`, version);

CREATE TABLE IF NOT EXISTS `coral`.`coral_schema_local` ON CLUSTER `prod` (
  `key` String,
  `value` String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/coral/coral_schema_local', '{replica}')
ORDER BY key;

CREATE TABLE IF NOT EXISTS `coral`.`coral_schema` ON CLUSTER `prod` AS `coral`.`coral_schema_local`
ENGINE = Distributed(`prod`, `coral`, `coral_schema_local`, cityHash64(key));

CREATE TABLE IF NOT EXISTS `coral`.`coral_bucket_values` ON CLUSTER `prod` (
  `bucket` Int32,
  `bits` UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/coral/coral_bucket_values', '{replica}')
ORDER BY bucket;

CREATE VIEW IF NOT EXISTS `coral`.`service_summary` ON CLUSTER `prod` AS
SELECT s.timestamp AS timestamp, s.service_name AS service_name, s.metric AS metric,
       s.request_count AS request_count, s.error_count AS error_count, s.sum_duration_ns AS sum_duration_ns,
       s.min_duration_ns AS min_duration_ns, s.max_duration_ns AS max_duration_ns,
       if(n = 0, 0, vals[arrayFirstIndex(c -> c > floor((0.5 * (n - 1))), cum)] + (vals[arrayFirstIndex(c -> c > ceil((0.5 * (n - 1))), cum)] - vals[arrayFirstIndex(c -> c > floor((0.5 * (n - 1))), cum)]) * ((0.5 * (n - 1)) - floor((0.5 * (n - 1))))) AS p50_duration_ns,
       if(n = 0, 0, vals[arrayFirstIndex(c -> c > floor((0.95 * (n - 1))), cum)] + (vals[arrayFirstIndex(c -> c > ceil((0.95 * (n - 1))), cum)] - vals[arrayFirstIndex(c -> c > floor((0.95 * (n - 1))), cum)]) * ((0.95 * (n - 1)) - floor((0.95 * (n - 1))))) AS p95_duration_ns,
       if(n = 0, 0, vals[arrayFirstIndex(c -> c > floor((0.99 * (n - 1))), cum)] + (vals[arrayFirstIndex(c -> c > ceil((0.99 * (n - 1))), cum)] - vals[arrayFirstIndex(c -> c > floor((0.99 * (n - 1))), cum)]) * ((0.99 * (n - 1)) - floor((0.99 * (n - 1))))) AS p99_duration_ns
FROM (
  SELECT timestamp, service_name, metric, toInt64(least(sum(request_count), 9223372036854775807)) AS request_count, toInt64(least(sum(error_count), 9223372036854775807)) AS error_count,
         sum(sum_duration_ns) AS sum_duration_ns, min(min_duration_ns) AS min_duration_ns, max(max_duration_ns) AS max_duration_ns
  FROM `coral`.`service_summary_parts`
  GROUP BY timestamp, service_name, metric
) AS s
LEFT JOIN (
  SELECT timestamp, service_name, metric, arraySort(x -> x.1, groupArray((k.bucket, k.n, v.value))) AS pairs,
         arraySum(x -> x.2, pairs) AS n, arrayCumSum(arrayMap(x -> x.2, pairs)) AS cum, arrayMap(x -> x.3, pairs) AS vals
  FROM (
    SELECT timestamp, service_name, metric, bucket, sum(count) AS n
    FROM `coral`.`service_latency_buckets`
    GROUP BY timestamp, service_name, metric, bucket
    HAVING n > 0
  ) AS k
  INNER JOIN (SELECT bucket, reinterpretAsFloat64(any(bits)) AS value FROM `coral`.`coral_bucket_values` GROUP BY bucket) AS v ON k.bucket = v.bucket
  GROUP BY timestamp, service_name, metric
) AS b ON s.timestamp = b.timestamp AND s.service_name = b.service_name AND s.metric = b.metric;

CREATE VIEW IF NOT EXISTS `coral`.`latency_exemplars` ON CLUSTER `prod` AS
SELECT timestamp, service_name, metric, bucket, trace_id, span_id, start_time, duration_ns
FROM `coral`.`latency_exemplar_parts`
ORDER BY duration_ns DESC, trace_id, span_id
LIMIT 4 BY timestamp, service_name, metric, bucket;

CREATE VIEW IF NOT EXISTS `coral`.`trace_summary` ON CLUSTER `prod` AS
SELECT trace_id, service_name, min(root).3 AS root_name, min(start_time) AS timestamp,
       max(end_ns) - toUnixTimestamp64Micro(min(start_time)) * 1000 AS duration_ns,
       toInt32(least(sum(span_count), 2147483647)) AS span_count, max(error) = 1 AS error
FROM `coral`.`trace_summary_parts`
GROUP BY trace_id, service_name;

CREATE VIEW IF NOT EXISTS `coral`.`system_metrics_rollup` ON CLUSTER `prod` AS
SELECT minute AS timestamp, host_name, service_name,
       avg(cpu_percent) AS cpu_percent, avg(memory_percent) AS memory_percent,
       toInt64(avg(memory_used_bytes)) AS memory_used_bytes, max(memory_total_bytes) AS memory_total_bytes,
       toInt32(count()) AS sample_count
FROM (SELECT toDateTime64(toStartOfMinute(timestamp), 6, 'UTC') AS minute, * FROM `coral`.`host_samples`)
GROUP BY minute, host_name, service_name;

CREATE VIEW IF NOT EXISTS `coral`.`service_instances` ON CLUSTER `prod` AS
SELECT service_name, instance_id, max(last_seen) AS last_seen
FROM `coral`.`service_instances_parts`
GROUP BY service_name, instance_id;

CREATE VIEW IF NOT EXISTS `coral`.`services` ON CLUSTER `prod` AS
SELECT s.name AS name, s.namespace AS namespace, s.region AS region, toInt32(ifNull(i.n, 0)) AS instance_count,
       s.first_seen AS first_seen, s.last_seen AS last_seen
FROM (
  SELECT name, max(namespace).2 AS namespace, max(region).2 AS region, min(first_seen) AS first_seen, max(last_seen) AS last_seen
  FROM `coral`.`services_parts`
  GROUP BY name
) AS s
LEFT JOIN (
  SELECT service_name, toInt64(uniqExact(instance_id)) AS n FROM `coral`.`service_instances_parts` GROUP BY service_name
) AS i ON s.name = i.service_name;
