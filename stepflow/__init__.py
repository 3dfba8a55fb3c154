"""Stepflow's shared core: models, errors, configuration, the tool registry, the SQL schema and logging.

Every role (workflows, activities, worker, starter) imports from here; nothing here starts anything.
"""
