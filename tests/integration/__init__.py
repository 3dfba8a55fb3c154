"""Integration tests: the Executor end to end on the Temporal dev server with a real worker."""
