"""The docker backend on a real engine (Podman serving the Docker API where `make docker-engine`
prepared it): a run with its figures, Ctrl-C, a server that never gets ready, a missing image,
and nothing left behind. Skipped, with the reason, where no engine answers."""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra import postgres
from connbench.model import results
from connbench.model.backend import docker_image
from tests.conftest import ROOT, connbench_cmd, part, run_cli
from tests.processes import connected_to, wait_for

# One worker for the module: its `engine` fixture holds the whole engine to "nothing left that
# was not there before", which another worker's container would break.
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]


def _skip_without_engine() -> None:
    if not postgres.docker_available():
        pytest.skip(
            os.environ.get("CONNBENCH_DOCKER_UNAVAILABLE")
            or "no Docker engine answers (make docker-engine prepares Podman, see the README)"
        )
    cannot = _cannot_start()
    if cannot is not None:
        pytest.skip(f"the Docker engine answers but cannot start a container: {cannot}")


PROBE = ["/bin/sh", "-c", "exit 0"]  # the probe container's entrypoint: starts, and ends


def cannot_start(client: Any, image: str, entrypoint: list[str]) -> str | None:
    """Why the engine cannot start a container of ``image`` running ``entrypoint`` (the
    engine's error), None when one starts; the container is removed either way. None too when
    ``image`` is not in the engine: that is the tests' to say, not the engine's.

    An engine may answer every API call and still fail every start: Podman here has said
    "did not start: write child: broken pipe" to each one for a while."""
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return None
    name = f"connbench-test-probe-{secrets.token_hex(4)}"
    try:
        container = client.containers.create(image, entrypoint=entrypoint, name=name)
        try:
            container.start()
            container.wait(timeout=60)
        finally:
            container.remove(force=True, v=True)
    except docker.errors.APIError as exc:
        return str(exc.explanation or exc)
    return None


@functools.cache
def _cannot_start() -> str | None:
    """:func:`cannot_start` for the tests' image, asked once per session (a start costs a
    second or more)."""
    import docker

    client = docker.from_env()
    try:
        return cannot_start(client, docker_image(), PROBE)
    finally:
        client.close()


def _inventory(client: Any) -> dict[str, set[str]]:
    return {
        "containers": {c.id for c in client.containers.list(all=True)},
        "volumes": {v.id for v in client.volumes.list()},
        "networks": {n.id for n in client.networks.list()},
    }


def _ours(client: Any) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True)
        if (c.name or "").startswith(postgres.CONTAINER_PREFIX)
    ]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """A client of the engine; after the module, no container, volume or network is left
    that was not there before it."""
    _skip_without_engine()
    import docker

    client = docker.from_env()
    before = _inventory(client)
    try:
        yield client
        after = _inventory(client)
        left = {kind: after[kind] - before[kind] for kind in after}
        assert left == {"containers": set(), "volumes": set(), "networks": set()}
    finally:
        client.close()


def test_a_run_on_the_docker_backend_has_its_figures(engine: Any, tmp_path: Path) -> None:
    before = {c.id for c in _ours(engine)}  # other runs' on the same engine are not this one's
    out = tmp_path / "r.json"
    proc = run_cli(
        # 3 s: the sampler's queries through the engine's port took ~0.5 s each at a load
        # average of 8, and a 1 s window then held 2 samples, not the 10 it holds when quiet.
        "run", "--strategy", "pool", "--duration", "3", "--warmup", "0",
        "--postgres", "docker", "--max-connections", "37", "-o", str(out), cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    saved = results.load(out)
    server_info = part(saved.environment.postgres)
    assert server_info.backend == f"docker:{docker_image()}"
    assert server_info.version
    assert server_info.settings.max_connections == 37  # the command's -c reached the server
    (result,) = saved.results
    assert result.status == "ok", result.failure
    integrity = part(result.integrity)
    assert part(result.requests).ok > 0
    # Every 2xx is one row, no more, no less.
    assert integrity.ok is True
    assert integrity.rows_inserted == integrity.ok_responses
    server = part(result.server)
    assert server.samples > 3
    assert part(server.connections_peak) >= 1
    # Read from the container's cgroup: a figure, not "-".
    assert part(part(result.cpu_percent).postgres) > 0
    assert {c.id for c in _ours(engine)} - before == set()


def test_ctrl_c_mid_run_removes_the_container(engine: Any, tmp_path: Path) -> None:
    before = {c.id for c in _ours(engine)}
    proc = subprocess.Popen(
        connbench_cmd(
            "run", "--strategy", "pool", "--duration", "60", "--warmup", "0",
            "--postgres", "docker", "-o", str(tmp_path / "r.json"),
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # Mid-run: the container is up and the load reaches the app.
        wait_for(
            lambda: (
                bool({c.id for c in _ours(engine)} - before)
                and connected_to("connbench.apps.pool", proc.pid)
            ),
            120,
            proc,
        )
        (container,) = [c for c in _ours(engine) if c.id not in before]
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert [b["HostIp"] for b in bindings["5432/tcp"]] == ["127.0.0.1"]  # loopback only
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert {c.id for c in _ours(engine)} - before == set()


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop a run the test gave up on as a user would (SIGTERM: it removes its container),
    SIGKILL only if that fails."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def never_ready_image(engine: Any) -> Iterator[str]:
    """The local image with an entrypoint that only sleeps: a container that runs, and whose
    PostgreSQL never answers. Made by committing a created container (no registry, no build)."""
    repository = "localhost/connbench-test-never-ready"
    tag = secrets.token_hex(4)
    made = engine.containers.create(docker_image(), name=f"connbench-test-{tag}")
    try:
        made.commit(
            repository=repository,
            tag=tag,
            # The command (postgres ...) lands in "$@", which the shell ignores.
            changes=['ENTRYPOINT ["/bin/sh", "-c", "exec sleep infinity", "sh"]'],
        )
    finally:
        made.remove(force=True, v=True)
    try:
        yield f"{repository}:{tag}"
    finally:
        engine.images.remove(f"{repository}:{tag}")


def test_a_server_that_never_gets_ready_is_one_line_and_nothing_left(
    engine: Any, never_ready_image: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "READY_TIMEOUT_S", 3.0)
    before = {c.id for c in _ours(engine)}
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--strategy",
            "pool",
            "--duration",
            "1",
            "--postgres",
            f"docker:{never_ready_image}",
            "-o",
            str(tmp_path / "r.json"),  # not the repository's results/
        ],
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"connbench: error: docker: {never_ready_image}: PostgreSQL not ready after"
    )
    assert {c.id for c in _ours(engine)} - before == set()


def test_an_image_that_does_not_exist_is_one_line(engine: Any, tmp_path: Path) -> None:
    before = {c.id for c in _ours(engine)}
    image = f"localhost/connbench-no-such-image:{secrets.token_hex(4)}"
    proc = run_cli(
        "run", "--strategy", "pool", "--postgres", f"docker:{image}",
        "-o", str(tmp_path / "r.json"), cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"connbench: error: docker: image {image!r} is not in the engine")
    assert {c.id for c in _ours(engine)} - before == set()


def test_the_probe_tells_a_container_that_cannot_start_from_one_that_does(engine: Any) -> None:
    # What the skip above rests on, on the same engine: a start the engine refuses is said
    # with the engine's words, and the tests' image starts (else they would have skipped).
    refused = cannot_start(engine, docker_image(), ["/connbench-no-such-entrypoint"])
    assert refused is not None and "connbench-no-such-entrypoint" in refused
    assert cannot_start(engine, docker_image(), PROBE) is None
    assert not [c for c in engine.containers.list(all=True) if "-probe-" in (c.name or "")]
