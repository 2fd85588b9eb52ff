-- The query service and Grafana log in as tidemark_query, a member of the read-only role
-- the writer's migrations grant SELECT to.
CREATE ROLE tidemark_reader NOLOGIN;
CREATE ROLE tidemark_query LOGIN PASSWORD 'tidemark_query' IN ROLE tidemark_reader;
