"""The ceilings, measured for real (short durations: this checks behaviour, not speed)."""

from connbench.infra.postgres import Postgres
from connbench.measure import calibrate

from .conftest import part


def test_ceilings_are_measured_and_the_table_is_left_empty(pg: Postgres) -> None:
    ceilings = calibrate.measure(pg, concurrency=4, duration_s=1)
    assert part(ceilings.generator_rps) > 0
    assert part(ceilings.pgbench_tps) > 0
    assert part(ceilings.pgbench_connect_tps) > 0
    # A session per transaction costs more than reusing one, on any machine.
    assert part(ceilings.pgbench_connect_tps) < part(ceilings.pgbench_tps)
    assert pg.count_rows() == 0


def test_pgbench_ships_with_the_embedded_server(pg: Postgres) -> None:
    path = calibrate.pgbench_path(pg)
    assert path is not None and path.parent == pg.bindir


def test_a_pgbench_failure_names_its_first_error() -> None:
    # Its summary's last lines say only that nothing was processed; the cause comes first.
    import subprocess

    from connbench.measure.calibrate import _pgbench_said

    failed = subprocess.CompletedProcess(
        ["pgbench"],
        2,
        stdout="transaction type: insert.sql\nduration: 2 s\n"
        "number of transactions actually processed: 0\n",
        stderr="pgbench: error: connection to server at 127.0.0.1, port 5432 failed: "
        "FATAL:  sorry, too many clients already\npgbench: error: Run was aborted\n",
    )
    said = _pgbench_said(failed)
    assert said.startswith("pgbench: error: connection to server"), said
    assert "too many clients" in said and "processed: 0" in said
