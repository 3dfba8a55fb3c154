"""The suite's shared harness: the dev server, worker processes, alternating rounds, statistics and the table."""
