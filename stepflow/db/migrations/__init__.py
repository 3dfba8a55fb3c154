"""Alembic migrations of the projection schema (SQLite and PostgreSQL); run by :func:`stepflow.db.migrate.upgrade`."""
