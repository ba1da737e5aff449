"""Property tests: whatever a result file holds, ``show`` and ``compare`` answer with the result
or with one line and exit 2, never a traceback.

The files are random bytes, a real result cut short, or a real result (saved by connbench
before the typed model) with one value somewhere replaced by a value of another type, removed,
joined by an unknown key, or with an unknown schema version.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from connbench.cli import app
from connbench.model import results
from connbench.model.errors import ResultFileError
from connbench.present import sink

from .conftest import examples

FIXTURE = Path(__file__).parent / "fixtures" / "result-v5-fault-calibrate.json"
DOCUMENT: dict[str, Any] = json.loads(FIXTURE.read_text())
PROPERTY = settings(
    max_examples=examples(60),
    deadline=None,  # no timing in tests: a slow machine is not a failure
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
runner = CliRunner()

Path_ = tuple[str | int, ...]


def _paths(value: Any, at: Path_ = ()) -> list[Path_]:
    """Every place in ``value`` a mutation can hit, the root excluded."""
    out = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*at, index))
    return out


PATHS = _paths(DOCUMENT)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities too: json writes them, and they are no numbers here
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    how = draw(st.sampled_from(["replace", "delete", "unknown key", "version"]))
    if how == "version":
        document["schema_version"] = draw(
            st.one_of(ANY_VALUE, st.integers()).filter(lambda v: v not in (2, 3, 4, 5, 6))
        )
        return document
    path = draw(st.sampled_from(PATHS))
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(ANY_VALUE)
    elif how == "delete" and isinstance(parent, dict):
        del parent[last]
    else:
        target = parent[last]
        if isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=6))] = draw(ANY_VALUE)
        else:
            parent[last] = draw(ANY_VALUE)
    return document


def _expected_error(path: Path) -> str | None:
    """What the loader says about ``path`` (None: it loads), as the terminal shows it: through
    the sink, which strips the control characters a hostile field name may hold."""
    try:
        results.load(path)
    except ResultFileError as exc:
        return sink.text(f"connbench: error: {exc}")
    return None


def _one_line_exit_2(result: Result, line: str | None = None) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("connbench: error: ")
    if line is not None:
        assert lines[0] == line
    assert "Traceback" not in result.output


def _check_show(path: Path) -> None:
    expected = _expected_error(path)
    result = runner.invoke(app, ["show", str(path), "--no-charts"])
    if expected is None:
        assert result.exit_code == 0, (result.output, result.exception)
    else:
        _one_line_exit_2(result, expected)


def _check_compare(path: Path) -> None:
    expected = _expected_error(path)
    for pair in ([str(FIXTURE), str(path)], [str(path), str(FIXTURE)]):
        result = runner.invoke(app, ["compare", *pair])
        if expected is not None:
            _one_line_exit_2(result, expected)
        elif result.exit_code == 2:  # loads, but e.g. its recorded gate does not validate
            _one_line_exit_2(result)
        else:
            assert result.exit_code in (0, 1), (result.output, result.exception)
            assert "Traceback" not in result.output


@PROPERTY
@given(content=st.one_of(st.binary(max_size=300), st.integers(0, len(FIXTURE.read_bytes()) - 1)))
def test_random_bytes_and_cut_files_are_one_line(tmp_path: Path, content: bytes | int) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(FIXTURE.read_bytes()[:content] if isinstance(content, int) else content)
    _check_show(path)
    _check_compare(path)


@PROPERTY
@given(document=mutated())
def test_wrong_shapes_are_one_line_naming_the_field(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(document))
    _check_show(path)
    _check_compare(path)


def test_the_mutations_do_break_things(tmp_path: Path) -> None:
    """Not every mutation loads: the checks above see both outcomes."""
    path = tmp_path / "x.json"
    document = copy.deepcopy(DOCUMENT)
    document["results"][0]["server"]["connections_peak"] = "4"
    path.write_text(json.dumps(document))
    assert _expected_error(path) == (
        f"connbench: error: {path}: results.0.server.connections_peak: "
        'expected a whole number, got "4"'
    )
