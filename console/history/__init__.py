"""The call history in PostgreSQL: its schema and migrations, the writer that copies the
event log into it, the calls derived from the events, and the queries that read it."""
