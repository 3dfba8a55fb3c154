"""Tools that ship with the engine; :mod:`stepflow.tools.builtin` holds the Python ones."""
