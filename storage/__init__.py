"""Storage: the database (tables, queries, migrations), the telemetry store backends and the broker's files."""
