"""Tests of the SQL projection: logs, metrics, monitoring, load, outage, verify and rebuild."""
