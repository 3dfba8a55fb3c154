"""Unit tests: configuration, errors and the tool registry, without servers."""
