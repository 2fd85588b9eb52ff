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
  };
  return kMigrations;
}

}  // namespace tidemark::writer
