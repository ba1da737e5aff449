"""A variant's label: one grammar (``Variant.label``) for the terminal's rows and the HTML
page's legends, so both name a variant alike."""

from __future__ import annotations

from connbench.model.scenario import Variant
from connbench.present import html_names, run_cells
from tests.conftest import made, run_of


def test_label_keeps_the_strategy_and_the_shown_parts_of_the_key() -> None:
    variant = Variant("pool", 8, 2, 4, 10, rate=150.0, topology="pgbouncer-transaction")
    assert variant.label(()) == "pool"
    assert variant.label(["pool", "topology", "rate"]) == "pool pool=4..10 via=pgb-txn rate=150"
    every = variant.label(["concurrency", "workers", "pool", "topology", "rate"])
    assert every == variant.key.replace("pgbouncer-transaction", "pgb-txn")


def test_terminal_and_html_name_a_pool_sweep_alike() -> None:
    variants = [
        Variant("pool", 4, 1, 4, 4),
        Variant("pool", 4, 1, 4, 10),
        Variant("pool", 8, 1, 4, 10),
        Variant("connect", 4, 1, None, None),
        Variant("pool", 4, 1, 4, 10, topology="pgbouncer-transaction"),
    ]
    run = run_of(*(made(v.strategy, variant=v.to_dict()) for v in variants))
    names = html_names.Names([summary.model_dump() for summary in run.summary])
    terminal = [run_cells.row_label(run, summary.variant) for summary in run.summary]
    assert [names.label[summary.key] for summary in run.summary] == terminal
    assert terminal == [
        "pool c=4 pool=4..4",
        "pool c=4 pool=4..10",  # the HTML page once said pool=10 here
        "pool c=8 pool=4..10",
        "connect c=4",
        "pool c=4 pool=4..10 via=pgb-txn",
    ]
