#include "services/timestream-writer/schema.h"

namespace tidemark::writer {

const std::vector<pg::Migration>& SchemaMigrations() {
  static const std::vector<pg::Migration> kMigrations = {
      {1, "series and raw points", R"sql(
CREATE TABLE series (
  series_id     bigint PRIMARY KEY,
  canonical_key text NOT NULL,
  measure_name  text NOT NULL,
  device_id     text NOT NULL,
  dimensions    jsonb NOT NULL,
  first_seen    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_measure_device_idx ON series (measure_name, device_id);
CREATE INDEX series_dimensions_idx ON series USING gin (dimensions jsonb_path_ops);

-- One row per series and instant; exactly one of the value columns is set.
CREATE TABLE points (
  series_id    bigint NOT NULL,
  time         timestamptz NOT NULL,
  value_double double precision,
  value_int    bigint,
  value_bool   boolean,
  value_string text,
  version      bigint NOT NULL,
  ingested_at  timestamptz NOT NULL,
  PRIMARY KEY (series_id, time)
) PARTITION BY RANGE (time);

-- Daily partitions named <parent>_YYYYMMDD covering [first_day, last_day], UTC.
CREATE FUNCTION tidemark_ensure_daily_partitions(parent text, first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  d date := first_day;
  created integer := 0;
  part text;
BEGIN
  -- Replicas creating the same partition at once would otherwise collide.
  PERFORM pg_advisory_xact_lock(hashtext('tidemark partitions ' || parent));
  WHILE d <= last_day LOOP
    part := parent || '_' || to_char(d, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                     part, parent, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
      created := created + 1;
    END IF;
    d := d + 1;
  END LOOP;
  RETURN created;
END $$;

-- Drops the daily partitions of parent that end before now() - keep.
CREATE FUNCTION tidemark_drop_expired_partitions(parent text, keep interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  r record;
  dropped integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tidemark partitions ' || parent));
  FOR r IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = parent::regclass AND c.relname ~ ('^' || parent || '_[0-9]{8}$')
  LOOP
    IF (to_date(right(r.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'
       <= now() - keep THEN
      EXECUTE format('DROP TABLE %I', r.relname);
      dropped := dropped + 1;
    END IF;
  END LOOP;
  RETURN dropped;
END $$;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tidemark_reader') THEN
    CREATE ROLE tidemark_reader NOLOGIN;
  END IF;
END $$;
GRANT USAGE ON SCHEMA public TO tidemark_reader;
GRANT SELECT ON series, points TO tidemark_reader;
)sql"},
      {2, "window aggregates, raw progress, and the narrow view", R"sql(
-- One row per series, window size and window start; the highest version wins.
CREATE TABLE aggregates (
  series_id    bigint NOT NULL,
  window_size  interval NOT NULL,
  window_start timestamptz NOT NULL,
  count        bigint NOT NULL,
  sum          double precision NOT NULL,
  min          double precision NOT NULL,
  max          double precision NOT NULL,
  avg          double precision NOT NULL,
  first        double precision NOT NULL,
  last         double precision NOT NULL,
  version      bigint NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (series_id, window_size, window_start)
) PARTITION BY RANGE (window_start);

-- How far the raw writer has stored each partition of tidemark.raw: every record below
-- next_offset is stored (or rejected). Late-point repairs wait for it.
CREATE TABLE raw_progress (
  topic       text NOT NULL,
  partition   integer NOT NULL,
  next_offset bigint NOT NULL,
  PRIMARY KEY (topic, partition)
);

-- Raw points and aggregates in Timestream's narrow shape, so that the reference queries
-- (WHERE measure_name IN ('cpu_idle', 'avg_cpu_idle')) and Grafana work on it directly.
-- Aggregate rows are named <aggregate>_<measure> at their window start.
CREATE VIEW narrow AS
SELECT s.device_id, s.dimensions, s.measure_name, p.time,
       coalesce(p.value_double, p.value_int::double precision) AS "measure_value::double",
       p.value_bool AS "measure_value::boolean",
       p.value_string AS "measure_value::varchar",
       NULL::interval AS window_size,
       p.version
FROM points p JOIN series s USING (series_id)
UNION ALL
SELECT s.device_id, s.dimensions, agg.name || '_' || s.measure_name, a.window_start,
       agg.value, NULL, NULL, a.window_size, a.version
FROM aggregates a JOIN series s USING (series_id)
CROSS JOIN LATERAL (VALUES ('avg', a.avg), ('min', a.min), ('max', a.max), ('sum', a.sum),
                           ('count', a.count::double precision), ('first', a.first),
                           ('last', a.last)) AS agg(name, value);

GRANT SELECT ON aggregates, raw_progress, narrow TO tidemark_reader;
)sql"},
  };
  return kMigrations;
}

}  // namespace tidemark::writer
