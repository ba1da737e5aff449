"""connbench on a shared machine and against a real database (issue 7, part A): what another
local user can see, where results go, which password reaches whom, and what is never printed.

Real servers throughout: the session's embedded PostgreSQL plays the "external" database, with
roles made for each case; runs go through the real CLI.
"""

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connbench.apps import STRATEGIES
from connbench.infra import appserver, pgbouncer, postgres, tempdirs
from connbench.model import files

from .conftest import connbench_cmd, run_cli
from .helpers import mounted_tmpfs

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a second OS user, mknod)")
# Its start, found anywhere, is the password (or a piece of it) leaked: drawn for each session,
# so that the processes of another suite on the machine (other test workers, colleagues' runs,
# with their own marker) are not taken for ours.
MARKER = f"zq9{secrets.token_hex(4)}"
PASSWORD = f"{MARKER} cr%t'@/x"  # every kind of character a DSN must escape
ROLE = "cb_bob"
QUICK = ("-s", "pool", "--duration", "1", "--warmup", "0", "--no-charts")


@pytest.fixture(scope="module")
def role(pg: postgres.Postgres) -> Iterator[dict[str, str]]:
    """A role with a password on the session's server: host, port, dbname, user (no password)."""
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(PASSWORD)
            )
        )
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(ROLE)))
    params = conninfo_to_dict(pg.dsn)
    yield {"host": "127.0.0.1", "port": str(params["port"]), "dbname": "connbench", "user": ROLE}
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(ROLE)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


def _uri(role: dict[str, str], password: str | None = PASSWORD) -> str:
    auth = f"{role['user']}:{quote(password, safe='')}" if password else role["user"]
    return f"postgresql://{auth}@{role['host']}:{role['port']}/{role['dbname']}"


class ProcWatch:
    """Polls the command line (readable by any local user) of every process connbench starts
    for ``needle``, and the environment of those that are not apps (only the apps may hold
    the password). connbench's own command line holds what the user put there."""

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode()
        self.leaks: list[str] = []
        self.apps_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProcWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                if int(proc.name) == me:
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    environ = (proc / "environ").read_bytes()
                except OSError:
                    continue
                if not cmdline or b"-m\0connbench\0" in cmdline or b"pytest" in cmdline:
                    continue  # mid-exec (read again next round), connbench itself, this test
                is_app = b"uvicorn" in cmdline
                self.apps_seen += is_app
                if self.needle in cmdline:
                    self.leaks.append(f"cmdline of {cmdline!r}")
                if self.needle in environ and not is_app and b"pgbench" not in cmdline:
                    self.leaks.append(f"environ of {cmdline!r}")
            time.sleep(0.05)


def _wait_for_app(proc: subprocess.Popen[str], timeout_s: float = 90) -> None:
    """Until the run ``proc`` has an app (uvicorn) running: the measurement is under way."""
    deadline = time.monotonic() + timeout_s

    def has_app() -> bool:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:  # it has exited: the assertion below says how
            return False
        for child in children:
            try:
                if "uvicorn" in " ".join(child.cmdline()):
                    return True
            except psutil.Error:  # gone, or a zombie, meanwhile
                continue
        return False

    while not has_app():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)


def _assert_one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("connbench: error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


# --- a second local user ------------------------------------------------------------------

SPY = r"""
import os, sys, time
shared, stop = sys.argv[1], sys.argv[2]
seen = set()
while not os.path.exists(stop):
    for root, dirs, names in os.walk(shared):
        if root != shared:
            seen.add("listed " + root)
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
                if path != stop:
                    seen.add("read " + path)
            except OSError:
                pass
print("\n".join(sorted(seen)))
"""


def _os_user(name: str) -> str:
    subprocess.run(["useradd", "--system", "--no-create-home", name], capture_output=True)
    return name


@ROOT_ONLY
@pytest.mark.integration
def test_another_local_user_sees_nothing_of_a_running_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The throwaway server, PgBouncer and an app start and stop in a world-writable temp dir
    while another OS user polls it: it can list no directory and read no file there."""
    shared = Path(tempfile.mkdtemp(prefix="cb-shared-", dir="/tmp"))
    os.chmod(shared, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    stop = shared / "stop"
    spy = subprocess.Popen(
        ["/usr/bin/python3", "-c", SPY, str(shared), str(stop)],
        user=_os_user("cbspy"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with (
            postgres.start(postgres.parse_backend("embedded"), workdir=shared) as pg,
            pgbouncer.start(pg, "transaction", pool_size=2, max_client_conn=10) as bouncer,
        ):
            logs = tempdirs.make("run", shared)
            config = appserver.AppConfig(pool_min=1, pool_max=1, prepare_threshold=None)
            with appserver.start(
                STRATEGIES["pool"], bouncer.dsn, pg.table, config, logs / "app.log"
            ):
                modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in shared.rglob("*")}
            tempdirs.remove(logs)
    finally:
        stop.write_text("")
        out, _ = spy.communicate(timeout=30)
        shutil.rmtree(shared, ignore_errors=True)
    assert out.strip() == "", f"another user saw:\n{out}"
    made = [p for p in modes if p.parent == shared and p.name.startswith("connbench-")]
    assert len(made) == 3 and all(modes[p] == 0o700 for p in made), modes
    secrets_ = [p for p in modes if p.name in ("userlist.txt", "postgres.log", "app.log")]
    assert len(secrets_) == 3 and all(modes[p] == 0o600 for p in secrets_), modes


# --- where results go ---------------------------------------------------------------------


def _refused(tmp_path: Path, output: str, *extra: str, cwd: Path | None = None) -> str:
    done = run_cli("run", *QUICK, *extra, "-o", output, cwd=cwd or tmp_path, timeout=60)
    line = _assert_one_error_line(done, 2)
    assert "starting PostgreSQL" not in done.stdout  # refused before anything started
    return line


@ROOT_ONLY
@pytest.mark.integration
def test_output_to_a_device_node_is_refused_before_the_run(tmp_path: Path) -> None:
    device = tmp_path / "full"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # a copy of /dev/full
    assert "character device" in _refused(tmp_path, str(device))
    assert stat.S_ISCHR(os.lstat(device).st_mode)


@pytest.mark.integration
def test_output_that_is_no_place_for_a_result_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    assert "a directory" in _refused(tmp_path, "dir")
    assert "names a directory" in _refused(tmp_path, "new-dir/")
    assert "a FIFO" in _refused(tmp_path, "fifo")
    assert "a FIFO" in _refused(tmp_path, "link")
    assert "file name is" in _refused(tmp_path, "n" * 300 + ".json")
    (tmp_path / "s.toml").write_text('name = "mine"\n')
    assert "is the scenario file" in _refused(tmp_path, "s.toml", "s.toml")
    assert (tmp_path / "s.toml").read_text() == 'name = "mine"\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "fifo", "link", "s.toml"]


@ROOT_ONLY
@pytest.mark.integration
def test_read_only_destination_or_working_directory_is_refused(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        assert "Read-only file system" in _refused(tmp_path, str(ro / "r.json"))
        # No -o: results/ under a working directory nobody can write to.
        done = run_cli("run", *QUICK, cwd=ro, timeout=60)
        assert "results: cannot create directory" in _assert_one_error_line(done, 2)


@pytest.mark.integration
def test_run_that_measured_nothing_leaves_an_existing_result_alone(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"committed": true}\n')
    bad_setting = tmp_path / "bad.toml"
    bad_setting.write_text('[server]\nshared_buffers = "1kB"\n')
    for args in (
        ("--postgres", "postgresql://nobody@127.0.0.1:1/none"),  # nothing listens there
        (str(bad_setting),),  # the server refuses the setting
    ):
        done = run_cli("run", *QUICK, *args, "-o", str(baseline), cwd=tmp_path, timeout=120)
        assert done.returncode != 0
        assert baseline.read_text() == '{"committed": true}\n', args


@ROOT_ONLY
def test_finished_run_is_kept_when_its_file_cannot_be_written(
    tmp_path: Path, role: dict[str, str]
) -> None:
    """The destination turns read-only during the run: the result goes to a private fallback
    directory, the last line says where, exit 1."""
    with mounted_tmpfs(tmp_path / "out", "size=1m") as out:
        proc = subprocess.Popen(
            connbench_cmd("run", *QUICK, "--postgres", _uri(role), "-o", str(out / "r.json")),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for_app(proc)
            subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # the test failed: leave no run behind
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("connbench: error: the result was saved to "), stderr
    saved = Path(last.removeprefix("connbench: error: the result was saved to ").split()[0])
    assert "Read-only file system" in stdout + stderr
    assert files.is_fallback(saved) and stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    data = json.loads(saved.read_text())
    assert data["results"][0]["requests"]["total"] > 0
    shutil.rmtree(saved.parent)


# --- passwords ----------------------------------------------------------------------------


def _spellings(role: dict[str, str]) -> list[tuple[str, ...]]:
    quoted = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    keywords = " ".join(f"{k}={v}" for k, v in role.items())
    return [
        ("--postgres", _uri(role)),
        ("--postgres", f"{keywords} password='{quoted}'"),
        ("--postgres", _uri(role), "--topology", "pgbouncer-transaction"),
    ]


@ROOT_ONLY
def test_no_password_in_output_files_or_command_lines(tmp_path: Path, role: dict[str, str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"postgres = {json.dumps(_uri(role))}\n")  # the file text is saved too
    runs = [*_spellings(role), (str(scenario),)]
    for i, args in enumerate(runs):
        out = tmp_path / f"r{i}.json"
        with ProcWatch(MARKER) as watch:
            done = run_cli("run", *QUICK, *args, "-o", str(out), cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert watch.apps_seen and not watch.leaks, watch.leaks
        for text in (done.stdout, done.stderr, out.read_text()):
            assert MARKER not in text and quote(MARKER) not in text, args
        assert json.loads(out.read_text())["results"][0]["requests"]["ok"] > 0


@pytest.mark.parametrize(
    "value",
    [
        f"postgresql:/bob:{PASSWORD}@127.0.0.1/x",
        f"postgres//bob:{quote(PASSWORD)}@127.0.0.1/x",
        f"mysql://root:{quote(PASSWORD)}@localhost/x",
        f"postgresql://bob:{quote(PASSWORD)}@[::1/x",
        f"postgresql://bob:{quote(PASSWORD)}@127.0.0.1:notaport/x",
        f"host=127.0.0.1 password={MARKER}xyz port=1 dbname",
        f"postgresql://bob:{quote(PASSWORD)}@127.0.0.1:1/x",  # nothing listens: libpq's error
    ],
    ids=lambda value: value.replace(MARKER, "MARKER"),  # the same on every xdist worker
)
@pytest.mark.integration
def test_bad_dsn_errors_do_not_echo_the_password(tmp_path: Path, value: str) -> None:
    done = run_cli("run", *QUICK, "--postgres", value, cwd=tmp_path, timeout=60)
    line = _assert_one_error_line(done, 2)
    assert MARKER not in done.stdout + done.stderr and quote(MARKER) not in line
    for saved in tmp_path.rglob("*.json"):
        assert MARKER not in saved.read_text()


# --- libpq's other ways of giving a password -------------------------------------------------


def _libpq_cases(role: dict[str, str], tmp_path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{role['user']}:{PASSWORD.replace(':', chr(92) + ':')}\n")
    passfile.chmod(0o600)
    services = tmp_path / "services"
    services.write_text("[cb]\n" + "".join(f"{k}={v}\n" for k, v in role.items()))
    no_password = make_conninfo("", **role)
    return {
        "PGPASSWORD": (no_password, {"PGPASSWORD": PASSWORD}),
        "PGPASSFILE": (no_password, {"PGPASSFILE": str(passfile)}),
        "service file": (
            "service=cb",
            {"PGSERVICEFILE": str(services), "PGPASSFILE": str(passfile)},
        ),
    }


@pytest.mark.parametrize("how", ["PGPASSWORD", "PGPASSFILE", "service file"])
def test_libpq_credentials_reach_the_apps_and_pgbouncer(
    tmp_path: Path, role: dict[str, str], how: str
) -> None:
    value, env = _libpq_cases(role, tmp_path)[how]
    out = tmp_path / "r.json"
    topologies = "direct,pgbouncer-session" if how == "PGPASSWORD" else "direct"
    with ProcWatch(MARKER) as watch:
        done = run_cli(
            "run", *QUICK, "--postgres", value, "--topology", topologies, "-o", str(out),
            cwd=tmp_path, env_extra=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    entries = json.loads(out.read_text())["results"]
    assert entries and all(e["status"] == "ok" and e["requests"]["ok"] > 0 for e in entries)
    assert not watch.leaks, watch.leaks
    assert MARKER not in done.stdout + done.stderr + out.read_text()


def test_calibrate_gives_pgbench_the_password_privately(
    tmp_path: Path, role: dict[str, str]
) -> None:
    value, env = _libpq_cases(role, tmp_path)["PGPASSWORD"]
    # Few clients: pgbench -C pays a SCRAM login (PBKDF2) per transaction on a shared machine.
    with ProcWatch(MARKER) as watch:
        done = run_cli(
            "calibrate",
            "--postgres",
            value,
            "--duration",
            "2",
            "--concurrency",
            "2",
            cwd=tmp_path,
            env_extra=env,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pgbench" in done.stdout and not watch.leaks, watch.leaks


# --- the database and the machine saying no ---------------------------------------------------


def test_user_who_may_not_create_a_table_gets_one_line(
    tmp_path: Path, pg: postgres.Postgres
) -> None:
    params = conninfo_to_dict(pg.dsn)
    with pg.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS cb_reader")
        conn.execute("CREATE ROLE cb_reader LOGIN PASSWORD 'reader-pw'")
    try:
        dsn = f"postgresql://cb_reader:reader-pw@127.0.0.1:{params['port']}/connbench"
        done = run_cli("run", *QUICK, "--postgres", dsn, cwd=tmp_path, timeout=60)
        line = _assert_one_error_line(done, 2)
        assert "may not create" in line and "permission denied" in line
        assert "reader-pw" not in done.stderr
    finally:
        with pg.connect() as conn:
            conn.execute("DROP ROLE cb_reader")


@ROOT_ONLY
@pytest.mark.integration
def test_full_temp_dir_names_the_cause_first(tmp_path: Path) -> None:
    # Where the server's OS user can reach it, or connbench would rightly go to /tmp instead.
    reachable = Path(tempfile.mkdtemp(prefix="cb-small-", dir="/tmp"))
    reachable.chmod(0o755)
    with mounted_tmpfs(reachable, "size=1m,mode=1777") as small:
        done = run_cli(
            "run", *QUICK, "-o", str(tmp_path / "r.json"), cwd=tmp_path,
            env_extra={"TMPDIR": str(small)}, timeout=120,
        )  # fmt: skip
    reachable.rmdir()
    errors = [line for line in done.stderr.splitlines() if line.startswith("connbench:")]
    assert done.returncode == 1 and errors, done.stderr
    assert "No space left on device" in errors[0]
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_sigterm_during_a_run_leaves_no_private_dir_behind(tmp_path: Path) -> None:
    """Our temp dirs go when the run ends, by Ctrl-C or SIGTERM too."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    proc = subprocess.Popen(
        connbench_cmd("run", *QUICK, "--duration", "30", "-o", str(tmp_path / "r.json")),
        cwd=tmp_path, env={**os.environ, "TMPDIR": str(shared)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for_app(proc)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the test failed: leave no run behind
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert list(shared.iterdir()) == []
