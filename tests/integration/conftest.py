"""Integration fixtures: the operator in-process and the test-side pod executor (see operator_fixtures.py)."""

from __future__ import annotations

from operator_fixtures import operator, podexec  # noqa: F401  (fixtures)
