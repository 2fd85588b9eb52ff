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
      {3, "aggregate change log for subscriptions, and stored window sizes", R"sql(
-- Every version of every window as it was stored, in commit order: what QueryService.Subscribe
-- streams and resumes from (change_id is the resume position). Filled by statement triggers
-- on aggregates, so the aggregator's windows and the writer's repairs are logged alike, in the
-- transaction that stores them.
CREATE TABLE aggregate_changes (
  change_id    bigserial PRIMARY KEY,
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
  stored_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aggregate_changes_stored_at_idx ON aggregate_changes (stored_at);

-- Changes up to this id have been pruned; a resume token below it cannot be honoured.
CREATE TABLE aggregate_changes_pruned (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  up_to    bigint NOT NULL
);
INSERT INTO aggregate_changes_pruned VALUES (true, 0);

-- The window sizes aggregates exist for, so that a query can name them without scanning.
CREATE TABLE window_sizes (
  window_size interval PRIMARY KEY
);

CREATE FUNCTION tidemark_log_aggregate_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A stale or no-op upsert changed nothing: nothing to log or to wake anyone for.
  IF NOT EXISTS (SELECT 1 FROM changed) THEN
    RETURN NULL;
  END IF;
  -- Serialises the logging transactions until they commit, so that change ids are assigned
  -- in commit order: a reader that has seen id N will never later see a smaller id appear.
  PERFORM pg_advisory_xact_lock(hashtext('tidemark aggregate changes'));
  INSERT INTO aggregate_changes (series_id, window_size, window_start, count, sum, min, max,
                                 avg, first, last, version, stored_at)
  SELECT series_id, window_size, window_start, count, sum, min, max, avg, first, last, version,
         updated_at
  FROM changed ORDER BY series_id, window_size, window_start;
  INSERT INTO window_sizes SELECT DISTINCT window_size FROM changed ON CONFLICT DO NOTHING;
  -- Delivered when the transaction commits; the payload is not needed.
  PERFORM pg_notify('tidemark_aggregate_changes', '');
  RETURN NULL;
END $$;
CREATE TRIGGER aggregates_log_inserts AFTER INSERT ON aggregates
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
  EXECUTE FUNCTION tidemark_log_aggregate_changes();
CREATE TRIGGER aggregates_log_updates AFTER UPDATE ON aggregates
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
  EXECUTE FUNCTION tidemark_log_aggregate_changes();

INSERT INTO window_sizes SELECT DISTINCT window_size FROM aggregates ON CONFLICT DO NOTHING;

-- Deletes changes stored before now() - keep and records how far it pruned.
CREATE FUNCTION tidemark_prune_aggregate_changes(keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  last_pruned bigint;
BEGIN
  SELECT max(change_id) INTO last_pruned FROM aggregate_changes WHERE stored_at < now() - keep;
  IF last_pruned IS NULL THEN
    RETURN 0;
  END IF;
  DELETE FROM aggregate_changes WHERE change_id <= last_pruned;
  UPDATE aggregate_changes_pruned SET up_to = greatest(up_to, last_pruned);
  RETURN last_pruned;
END $$;

GRANT SELECT ON aggregate_changes, aggregate_changes_pruned, window_sizes TO tidemark_reader;
)sql"},
      {4, "Kafka incarnations, so that versions survive topics recreated from offset 0", R"sql(
CREATE TABLE stream_incarnation (
  epoch integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stream_incarnation (epoch) VALUES (0);
)sql"},
      {5, "row locks instead of advisory locks; lock-light partition creation", R"sql(
-- The writer's locks are rows of tidemark_locks (created with the migrations' own lock),
-- taken with SELECT ... FOR UPDATE. Any role can take an advisory lock, so the read-only
-- role could stall the writer; a row lock needs UPDATE on the table, which only its owner has.
REVOKE ALL ON tidemark_locks FROM PUBLIC, tidemark_reader;
INSERT INTO tidemark_locks (name) VALUES
  ('incarnation'), ('aggregate changes'), ('partitions points'), ('partitions aggregates')
ON CONFLICT DO NOTHING;

-- Nobody but the owner creates objects in the schema (PostgreSQL 15's default; explicit for
-- databases created by older versions) or, when the writer owns the database, temporary tables
-- or schemas in it: the read-only role stays read-only. The writer's own staging tables are
-- temporary; an owner keeps every privilege on its database.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$ BEGIN
  IF pg_has_role(current_user, (SELECT datdba FROM pg_database
                                WHERE datname = current_database()), 'USAGE') THEN
    EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  END IF;
END $$;

-- Daily partitions named <parent>_YYYYMMDD covering [first_day, last_day], UTC. Each is created
-- as a table of its own and attached: ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent,
-- which neither readers nor inserts conflict with, where CREATE TABLE ... PARTITION OF takes
-- ACCESS EXCLUSIVE, waits behind any open read and blocks every insert queued behind it. The
-- CHECK constraint matching the bounds spares ATTACH its validation scan; it is dropped once
-- the partition bound enforces the same.
CREATE OR REPLACE FUNCTION tidemark_ensure_daily_partitions(parent text, first_day date,
                                                            last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  d date := first_day;
  created integer := 0;
  part text;
  key text;
  lo text;
  hi text;
BEGIN
  -- Replicas creating the same partition at once would otherwise collide.
  INSERT INTO tidemark_locks (name) VALUES ('partitions ' || parent) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM tidemark_locks WHERE name = 'partitions ' || parent FOR UPDATE;
  SELECT a.attname INTO key
  FROM pg_partitioned_table pt
  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
  WHERE pt.partrelid = parent::regclass;
  WHILE d <= last_day LOOP
    part := parent || '_' || to_char(d, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      lo := d::text || ' 00:00:00+00';
      hi := (d + 1)::text || ' 00:00:00+00';
      EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
      EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L)',
                     part, part || '_bounds', key, lo, key, hi);
      EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                     parent, part, lo, hi);
      EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
      created := created + 1;
    END IF;
    d := d + 1;
  END LOOP;
  RETURN created;
END $$;

-- Retention detaches partitions concurrently and drops them (services/timestream-writer/
-- partitions.cc), which a function cannot: DETACH ... CONCURRENTLY runs outside transactions.
DROP FUNCTION tidemark_drop_expired_partitions(text, interval);

CREATE OR REPLACE FUNCTION tidemark_log_aggregate_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A stale or no-op upsert changed nothing: nothing to log or to wake anyone for.
  IF NOT EXISTS (SELECT 1 FROM changed) THEN
    RETURN NULL;
  END IF;
  -- Serialises the logging transactions until they commit, so that change ids are assigned
  -- in commit order: a reader that has seen id N will never later see a smaller id appear.
  PERFORM 1 FROM tidemark_locks WHERE name = 'aggregate changes' FOR UPDATE;
  INSERT INTO aggregate_changes (series_id, window_size, window_start, count, sum, min, max,
                                 avg, first, last, version, stored_at)
  SELECT series_id, window_size, window_start, count, sum, min, max, avg, first, last, version,
         updated_at
  FROM changed ORDER BY series_id, window_size, window_start;
  INSERT INTO window_sizes SELECT DISTINCT window_size FROM changed ON CONFLICT DO NOTHING;
  -- Delivered when the transaction commits; the payload is not needed.
  PERFORM pg_notify('tidemark_aggregate_changes', '');
  RETURN NULL;
END $$;
)sql"},
      {6, "series of a measure in id order, for paged reads", R"sql(
-- Paged reads walk the selected series in id order from the cursor's series
-- (services/query/query_store.cc, ReadInChunks). Ids are hashes, so the primary key visits
-- the table's rows in random order, one heap fetch per series of any measure; with the
-- measure first, a read of one measure walks only that measure's series, from the index
-- alone. Built once, blocking inserts of new series while it is built (about a second per
-- million series).
CREATE INDEX series_measure_id_idx ON series (measure_name, series_id);
)sql"},
  };
  return kMigrations;
}

}  // namespace tidemark::writer
