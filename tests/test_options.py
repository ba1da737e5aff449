"""The option table of `connbench run` (connbench/options.py): one row per option, the overrides
derived from it, the flag each row declares the one the model's messages name."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from connbench import options
from connbench.cli import app
from connbench.model import appspec, scenario


def _run_flags() -> dict[str, str]:
    """Parameter name -> long flag, as click built `run` from the table."""
    command = typer.main.get_command(app)
    run = command.commands["run"]  # type: ignore[attr-defined]
    return {param.name: max(param.opts, key=len) for param in run.params}


def test_every_row_is_a_parameter_of_run_in_table_order() -> None:
    assert list(_run_flags()) == [opt.name for opt in options.RUN]


def test_each_keyed_flag_is_the_one_the_model_names_in_its_messages() -> None:
    flags = _run_flags()
    keyed = [opt for opt in options.RUN if opt.key is not None]
    assert len(keyed) > 30
    for opt in keyed:
        top = opt.key.split(".")[0] if opt.key else ""
        assert top in scenario.PARSERS or top in appspec.REQUEST_FIELDS or top == "server", top
        assert flags[opt.name] == scenario.flag_name(top), opt


def test_overrides_come_from_the_table_and_leave_out_what_was_not_given() -> None:
    given: dict[str, Any] = {opt.name: opt.default for opt in options.RUN}
    assert options.overrides(options.RUN, given) == {}
    given |= {"concurrency": "8,32", "fail_on": [], "header": ["A: b"], "max_connections": "50"}
    given["output"] = "elsewhere.json"  # the command's own: never a scenario value
    assert options.overrides(options.RUN, given) == {
        "concurrency": "8,32",
        "headers": ["A: b"],
        "server": {"max_connections": "50"},
    }


def test_a_new_row_is_a_new_flag_and_a_new_override() -> None:
    row = options.Opt("extra", str | None, typer.Option("--extra"), key="description")
    table = (*options.RUN, row)

    @options.declare(table)
    def command(**given: Any) -> dict[str, Any]:
        return options.overrides(table, given)

    extra = typer.Typer()
    extra.command()(command)
    args = ["--extra", "said once", "-c", "4"]
    result = CliRunner().invoke(extra, args, standalone_mode=False)
    assert result.exit_code == 0, result.output
    assert result.return_value == {"concurrency": "4", "description": "said once"}
