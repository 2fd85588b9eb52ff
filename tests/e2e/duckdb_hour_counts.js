// Prints, as one JSON object, the number of events per hour partition of a lake directory as
// DuckDB reads it: read_json_auto over the documented glob with hive_partitioning.
// Usage: NODE_PATH=.local/npm/node_modules node duckdb_hour_counts.js LAKE_DIR
const { DuckDBInstance } = require('@duckdb/node-api');

async function main() {
  const lake = process.argv[2];
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const glob = `${lake.replace(/'/g, "''")}/*/*/*/*/*.jsonl.gz`;
  const reader = await connection.runAndReadAll(
      `SELECT year, month, day, hour, count(*) AS events
       FROM read_json_auto('${glob}', hive_partitioning = true)
       GROUP BY ALL ORDER BY ALL`);
  const pad = (v, n) => String(v).padStart(n, '0');
  const counts = {};
  for (const [year, month, day, hour, events] of reader.getRows()) {
    counts[`year=${pad(year, 4)}/month=${pad(month, 2)}/day=${pad(day, 2)}/hour=${pad(hour, 2)}`] =
        Number(events);
  }
  console.log(JSON.stringify(counts));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
