#!/usr/bin/env bash
# Stops exactly what deploy/local/run.sh started (recorded in .local/pids).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="$root/.local"
[ -f "$state/pids" ] || { echo "nothing is running"; exit 0; }
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
# Services first (newest first), then PostgreSQL.
tac "$state/pids" | while read -r pid name; do
  if [ "$pid" = "pg_ctl" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$name" -m fast stop >/dev/null && echo "stopped PostgreSQL"
  elif kill -0 "$pid" 2>/dev/null; then
    # After a reboot or a crash the number may belong to another process now: only one
    # started from this checkout is ours.
    if ! tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$root/"; then
      echo "$name ($pid) is gone; process $pid is another program, left alone"
      continue
    fi
    kill -TERM "$pid" && echo "stopped $name ($pid)"
    # Ingest settles what it queued (up to its 10 s delivery timeout) before it exits.
    for _ in $(seq 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name ($pid) did not stop within 25 s; killing it" >&2
      kill -KILL "$pid"
    fi
  fi
done
rm -f "$state/pids"
