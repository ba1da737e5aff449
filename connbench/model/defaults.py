"""Defaults the help text states and the model applies, in a module that imports nothing.

The CLI reads them when it builds ``--help`` (which must answer at once, so it imports nothing
heavy: see tests/test_cli_habits.py); the model and infra apply them. One place each, so the
help cannot say one figure and connbench use another.
"""

from __future__ import annotations

SETUP_SQL_TIMEOUT_S = 30.0  # an app's setup_sql: statement_timeout, then a cancel
COUNT_SQL_TIMEOUT_S = 10.0  # an app's count_sql, read before and after each variant
