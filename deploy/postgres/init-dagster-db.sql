-- The persona metadata database is POSTGRES_DB; Dagster keeps its runs and events apart.
CREATE DATABASE dagster;
