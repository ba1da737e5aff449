"""Defaults the help text states and the model applies, in a module that imports nothing.

The CLI reads them when it builds ``--help`` (which must answer at once, so it imports nothing
heavy: see tests/test_cli_habits.py); the model and infra apply them. One place each, so the
help cannot say one figure and connbench use another (tests/test_defaults.py changes them and
checks that the help and the model follow).
"""

from __future__ import annotations

# What a run uses when neither a flag nor the scenario file says otherwise.
STRATEGY = "pool"
CONCURRENCY = 32
DURATION_S = 10.0  # measured time per variant
WARMUP_S = 2.0
TIMEOUT_S = 10.0  # per request
POOL_MIN = 4  # psycopg_pool's own min_size; its max_size defaults to min_size
WORKERS = 1  # uvicorn worker processes
TOPOLOGY = "direct"
PGBOUNCER_POOL_SIZE = 20  # PgBouncer's own default_pool_size
REPEAT = 1
SLICES = 1  # --slices: a round measures its sides one after the other
# A sliced round's turn (connbench.measure.turns): its unmeasured start, where the connections'
# first requests after a pause fall, and the shortest measured part worth its two edges.
REWARM_S = 0.05
MIN_TURN_S = 0.1
MAX_ROUNDS = 40  # --repeat auto without --max-rounds
ALPHA = 0.05  # the gate's error rate (compare, and an A/B gate on a run)
POSTGRES = "embedded"
ENGINE = "httptools"
METHOD = "GET"  # an own app's requests, unless --method or --request says otherwise
MAX_CONNECTIONS = 100  # PostgreSQL's own: connbench sets it only when asked
PROGRESS_EVERY_S = 10.0  # periodic lines off a terminal when --progress is not given
CALIBRATE_DURATION_S = 5.0  # `connbench calibrate`: time per measurement

# The locust engine: local worker processes, remote ones to wait for, the master's address
# and port (0: a free one).
LOCUST_WORKERS = 1
EXPECT_WORKERS = 0
LOCUST_BIND = "127.0.0.1"
LOCUST_PORT = 0

SETUP_SQL_TIMEOUT_S = 30.0  # an app's setup_sql: statement_timeout, then a cancel
COUNT_SQL_TIMEOUT_S = 10.0  # an app's count_sql, read before and after each variant


def seconds(value: float) -> str:
    """A default duration as the help states it: ``10s``, ``500ms``."""
    return f"{value:g}s" if value >= 1 else f"{value * 1000:g}ms"
