"""The SQL projection: schema, engine set-up and the reads and writes on it."""
