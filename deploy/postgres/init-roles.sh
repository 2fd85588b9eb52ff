#!/bin/sh
# Tidemark's database roles, without a password in any file of the repository:
#   tidemark_writer  LOGIN, not a superuser; owns the database (and so, in PostgreSQL 15, its
#                    public schema) and every table its migrations create.
#   tidemark_reader  NOLOGIN; the migrations grant it SELECT on the tables and views.
#   tidemark_query   LOGIN, member of tidemark_reader: the query service and Grafana.
# The passwords are read from files (Docker secrets). Run by the postgres image's entrypoint
# from /docker-entrypoint-initdb.d on an empty data directory, as POSTGRES_USER; also safe to
# run again by hand (with PGHOST/PGPORT/PGUSER) to rotate the passwords.
#
#   TIDEMARK_WRITER_PASSWORD_FILE  default /run/secrets/tidemark_writer_password
#   TIDEMARK_QUERY_PASSWORD_FILE   default /run/secrets/tidemark_query_password
#   TIDEMARK_DB                    default $POSTGRES_DB, else tidemark
set -eu

writer_file="${TIDEMARK_WRITER_PASSWORD_FILE:-/run/secrets/tidemark_writer_password}"
query_file="${TIDEMARK_QUERY_PASSWORD_FILE:-/run/secrets/tidemark_query_password}"
db="${TIDEMARK_DB:-${POSTGRES_DB:-tidemark}}"

for f in "$writer_file" "$query_file"; do
  if [ ! -r "$f" ] || [ ! -s "$f" ]; then
    echo "init-roles: password file $f is missing, unreadable or empty" >&2
    exit 1
  fi
done

# The passwords go from the files to psql's variables through psql's backquotes (which strip one
# trailing newline, as the services' --pg_password_file does): never on a command line or in
# the environment. The quoted here-document keeps the shell from expanding anything in it.
psql -X -q -v ON_ERROR_STOP=1 ${POSTGRES_USER:+--username "$POSTGRES_USER"} --dbname "$db" \
  -v writer_file="$writer_file" -v query_file="$query_file" -v db="$db" <<'EOSQL'
-- Statements carrying a password stay out of the server's log, whatever its settings.
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\set writer_password `cat :'writer_file'`
\set query_password `cat :'query_file'`

SELECT 'CREATE ROLE tidemark_writer'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tidemark_writer') \gexec
SELECT 'CREATE ROLE tidemark_reader'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tidemark_reader') \gexec
SELECT 'CREATE ROLE tidemark_query'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tidemark_query') \gexec

ALTER ROLE tidemark_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'writer_password';
ALTER ROLE tidemark_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE tidemark_query LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'query_password';
GRANT tidemark_reader TO tidemark_query;
\unset writer_password
\unset query_password

-- The writer owns the database: its migrations create the tables in the public schema, which
-- PostgreSQL 15 gives to the database's owner. Everyone else may only connect, and only the
-- read-only role: no schemas, no temporary tables, no objects in public.
ALTER DATABASE :"db" OWNER TO tidemark_writer;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO tidemark_reader;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
EOSQL
