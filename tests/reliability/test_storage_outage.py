"""Storage outages: the PostgreSQL server restarts mid-study and the workers ride it out; a
storage that cannot be reached at start is one clear error, at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

import pbtune
from conftest import REQUIRE_POSTGRES_ENV, postgres_url
from pbtune import TrialState
from pbtune.storages import _storage as storage_module
from reliability.contention_workload import (
    DELAY_ENV,
    HOLD_ENV,
    LOG_ENV,
    audit,
    start_run,
    wait_for,
)

OUTAGE_S = 3.0
READY_TIMEOUT_S = 60.0


class LocalServer:
    """The local PostgreSQL cluster that serves the test URL, stopped and started with
    ``pg_ctlcluster`` (Debian's postgresql-common)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cluster = _find_cluster(url)

    def _ctl(self, action: str) -> None:
        assert self.cluster is not None
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *self.cluster, action],
                       check=True, capture_output=True, timeout=READY_TIMEOUT_S)

    def stop(self) -> None:
        self._ctl("stop")

    def start(self) -> None:
        self._ctl("start")

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def ensure_running(self) -> None:
        """Start the server if it is down, and wait until it accepts connections."""
        if not self.accepts_connections():
            with contextlib.suppress(subprocess.SubprocessError):
                self.start()  # fails harmlessly if it is running already
        wait_for(self.accepts_connections, READY_TIMEOUT_S, "PostgreSQL to accept connections")


def _find_cluster(url: str) -> tuple[str, str] | None:
    """(version, name) of the local cluster listening on the URL's port, if any."""
    parsed = make_url(url)
    if parsed.host not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_ctlcluster"):
        return None
    try:
        listing = subprocess.run(["pg_lsclusters", "--no-header"], check=True,
                                 capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(parsed.port or 5432):
            return fields[0], fields[1]
    return None


@pytest.fixture
def server() -> Iterator[LocalServer]:
    url = postgres_url()
    local = LocalServer(url)
    if local.cluster is None:
        reason = (f"cannot restart the PostgreSQL server at {make_url(url).host}:"
                  f"{make_url(url).port or 5432} from here (needs a local cluster that "
                  "pg_ctlcluster manages)")
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield local
    finally:
        local.ensure_running()  # other tests use the server


def test_a_postgresql_restart_mid_study_is_ridden_out(server: LocalServer,
                                                       tmp_path: Path) -> None:
    name = f"outage-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "claims.log"

    def executions() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    # Member 0's last trial waits for the hold to be lifted: however fast the rest goes, the
    # study is still running (its idle workers polling) through the whole outage.
    hold = tmp_path / "hold"
    hold.write_text("20")
    run = start_run(tmp_path, server.url, name, workers=4, population=8, steps_per_trial=1,
                    max_steps=20, env={LOG_ENV: str(log), DELAY_ENV: "0.05",
                                       HOLD_ENV: str(hold)})
    try:
        wait_for(lambda: executions() >= 20, 60, "the study to get going")
        try:
            server.stop()
            stopped_at = executions()
            time.sleep(OUTAGE_S)
        finally:
            server.start()
            server.ensure_running()
        hold.unlink()
        code = run.wait(timeout=120)
    finally:
        run.kill()
    stderr = run.stderr
    assert code == 0, stderr[-4000:]
    # The outage reached the workers, which retried with backoff rather than failing.
    assert "storage busy or unreachable" in stderr, stderr[-4000:]
    assert "Traceback" not in stderr and "kept failing" not in stderr, stderr[-4000:]
    assert executions() > stopped_at, "the study went on after the restart"

    # Every trial is accounted for: COMPLETE once, or lost and retried.
    study = pbtune.load_study(name, storage=server.url)
    checked = audit(study, log, stderr="")
    lost = study.trials([TrialState.LOST])
    expected = {f"trial {t.id} is LOST: {(t.error or '').strip()[-300:]}" for t in lost}
    assert [p for p in checked.problems if p not in expected] == [], checked.problems
    assert checked.unfinished == 0 and checked.double_claims == []


class VirtualClock:
    """Stands in for the `time` module of the storage: sleeping advances the clock at
    once, so the retry loop's arithmetic is checked exactly, however busy the machine."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.now < 1000.0 + 3600, "still retrying after an hour"
        self.slept.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return time.time()


def test_transient_errors_are_retried_for_the_whole_retry_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart outlasts a fixed number of quick retries; the retry period is in seconds.
    (The same backoff, shortened: 0.01 s steps, a 1 s period.)"""
    monkeypatch.setattr(storage_module, "RETRY_BASE_DELAY_S", 0.01)
    monkeypatch.setattr(storage_module, "RETRY_MAX_DELAY_S", 0.01)
    monkeypatch.setattr(storage_module, "RETRY_FOR_S", 1.0)
    storage = pbtune.Storage(f"sqlite:///{tmp_path / 'study.db'}")
    clock = VirtualClock()
    monkeypatch.setattr(storage_module, "time", clock)
    calls = 0

    def down_for(seconds: float) -> Callable[[], str]:
        until = clock.monotonic() + seconds

        def operation() -> str:
            nonlocal calls
            calls += 1
            if clock.monotonic() < until:
                raise OperationalError("SELECT 1", {}, Exception("Connection refused"))
            return "back"

        return operation

    assert storage._retry(down_for(0.5)) == "back"
    assert calls > storage_module.RETRY_ATTEMPTS  # more tries than the count alone allows
    started = clock.monotonic()
    with pytest.raises(pbtune.StorageError, match="kept failing"):
        storage._retry(down_for(60.0))
    # It kept trying for the whole period, and gave up at the first try past it.
    assert 1.0 <= clock.monotonic() - started < 1.0 + 0.01 + 1e-9


# -- a storage that cannot be reached at start -----------------------------------------------
UNREACHABLE = [
    pytest.param("postgresql://postgres@127.0.0.1:1/test", "127.0.0.1", id="postgresql-port"),
    pytest.param("sqlite:////nonexistent-pbtune-dir/sub/study.db", "/nonexistent-pbtune-dir",
                 id="sqlite-no-directory"),
]


@pytest.mark.parametrize(("url", "named"), UNREACHABLE)
def test_cli_reports_an_unreachable_storage_in_one_line(url: str, named: str) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pbtune", "status", "--storage", url],
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and named in lines[0], lines[0]
    assert result.stdout == ""
    # Not after the minute-long backoff that rides out an outage mid-study (the bound
    # leaves room for a slow interpreter start; the retries are counted in the next test).
    assert elapsed < storage_module.RETRY_FOR_S, f"took {elapsed:.1f}s"


@pytest.mark.parametrize(("url", "named"), UNREACHABLE)
def test_python_api_raises_storage_error_at_once(
    url: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(storage_module, "time", clock)
    for open_it in (
        lambda: pbtune.load_study("study", storage=url),
        lambda: pbtune.create_study("study", storage=url, space={"x": pbtune.Float(0, 1)},
                                    metric="score"),
    ):
        clock.slept.clear()
        with pytest.raises(pbtune.StorageError, match="cannot open storage") as raised:
            open_it()
        assert named in str(raised.value)
        # A few quick tries (a connection refused is transient mid-study), never the
        # backoff that rides out an outage.
        assert len(clock.slept) < storage_module.OPEN_ATTEMPTS
        assert sum(clock.slept) < 1.0
