"""A study through PgBouncer in transaction pooling mode (``?pbtune_pooler=transaction``):
many more client connections than the pooler's server connections, and than a server's
default ``max_connections`` (100), and every trial accounted for.

The test starts Debian's ``pgbouncer`` itself on a free loopback port, in front of the
test database. Without ``pgbouncer`` installed it is skipped, unless
``PBTUNE_REQUIRE_POSTGRES=1`` (CI installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

import pbtune
from conftest import REQUIRE_POSTGRES_ENV, drop_pbtune_tables, postgres_url
from pbtune import TrialState
from pbtune.storages import _lender
from pbtune.worker import run_worker

POOL_SIZE = 4  # the pooler's server connections
WORKERS = 120  # each with a storage, so a client connection, of its own
MAX_STEPS = 2
READY_S = 30.0
BARRIER_S = 120.0


@dataclass
class PgBouncer:
    port: int
    database: str
    user: str

    @property
    def url(self) -> str:
        return (f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"
                "?pbtune_pooler=transaction")

    def pool(self) -> dict[str, Any]:
        """PgBouncer's ``SHOW POOLS`` row of the test database."""
        return next(row for row in self.admin("SHOW POOLS") if row["database"] == self.database)

    def admin(self, command: str) -> list[dict[str, Any]]:
        """The rows that a command of PgBouncer's admin console returns."""
        admin = f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as connection:
            cursor = connection.execute(command)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        reason = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pgbouncer(tmp_path: Path) -> Iterator[PgBouncer]:
    binary = _binary()
    server = make_url(postgres_url())
    user, database = server.username or "postgres", server.database or "postgres"
    drop_pbtune_tables(postgres_url())
    port = _free_port()
    (tmp_path / "users.txt").write_text(f'"{user}" "{server.password or ""}"\n')
    (tmp_path / "pgbouncer.ini").write_text(f"""\
[databases]
{database} = host={server.host or '127.0.0.1'} port={server.port or 5432} dbname={database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp_path / 'users.txt'}
admin_users = {user}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = {WORKERS * 2}
server_round_robin = 1
idle_transaction_timeout = 60
""")
    # PgBouncer will not run as root; it reads its files before it switches user.
    switch = ["-u", "nobody"] if os.geteuid() == 0 and _has_user("nobody") else []
    with open(tmp_path / "pgbouncer.log", "wb") as log:
        process = subprocess.Popen([binary, *switch, str(tmp_path / "pgbouncer.ini")],
                                   stdout=log, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(port, database, user)
    try:
        _wait_until_ready(bouncer, process, tmp_path / "pgbouncer.log")
        yield bouncer
    finally:
        process.terminate()
        process.wait(timeout=30)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_until_ready(bouncer: PgBouncer, process: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + READY_S
    while True:
        try:
            bouncer.admin("SHOW VERSION")
            return
        except psycopg.Error:
            if process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"pgbouncer did not start: {log.read_text()}") from None
            time.sleep(0.1)


def test_a_study_through_pgbouncer_has_more_clients_than_the_server_allows(
    pgbouncer: PgBouncer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker holds its client connection open at one moment (a barrier in its first
    trial), and the pooler runs their transactions on `POOL_SIZE` server connections."""
    # Workers keep their connection while they run, so all of them hold one at the
    # barrier; each connection then serves many transactions, which through a pooler
    # works only without prepared statements.
    monkeypatch.setattr(_lender, "LINGER_S", 3600.0)
    monkeypatch.setattr(_lender, "FOLLOW_UP_S", 3600.0)
    study = pbtune.create_study(
        "bounced", space={"x": pbtune.Float(0.0, 1.0)}, storage=pgbouncer.url,
        metric="score", population_size=WORKERS, steps_per_trial=1, max_steps=MAX_STEPS,
        checkpoint_root=tmp_path / "ckpt",
    )
    seen: list[dict[str, Any]] = []
    together = threading.Barrier(WORKERS, action=lambda: seen.append(pgbouncer.pool()))

    def train(trial: pbtune.Trial) -> dict[str, float]:
        if trial.start_step == 0:  # each worker's first trial: one per worker
            together.wait(BARRIER_S)
        (trial.checkpoint_dir / "x").write_text(str(trial.params["x"]))
        return {"score": float(trial.params["x"])}

    errors: list[BaseException] = []

    def work() -> None:
        storage = pbtune.Storage(pgbouncer.url)
        try:
            run_worker(storage, "bounced", train)
        except BaseException as error:
            errors.append(error)
            together.abort()
        finally:
            storage.dispose()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    # WORKERS clients at once: more than a server's default max_connections (100), and
    # thirty times the pooler's server connections.
    [pool] = seen
    assert pool["cl_active"] + pool["cl_waiting"] >= WORKERS
    servers = sum(pool[k] for k in ("sv_active", "sv_idle", "sv_used", "sv_tested",
                                    "sv_login"))
    assert servers <= POOL_SIZE
    trials = study.trials()
    assert len(trials) == WORKERS * MAX_STEPS
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert study.state == pbtune.StudyState.COMPLETE


def test_each_transaction_may_run_on_another_server_connection(pgbouncer: PgBouncer) -> None:
    """psycopg prepares a statement that a connection runs often; through the pooler the
    next transaction runs on another server connection, which does not know it."""
    plain = pgbouncer.url.split("?")[0]
    holders = [psycopg.connect(plain, prepare_threshold=None) for _ in range(POOL_SIZE)]
    for holder in holders:  # a transaction each: the pooler opens a server connection each
        holder.execute("SELECT 1")
    for holder in holders:  # their server connections are handed out in turn from now on
        holder.commit()
        holder.close()
    storage = pbtune.Storage(pgbouncer.url)
    try:
        for _ in range(20):  # one statement, a transaction each, on one client connection
            assert storage.list_studies() == []
    finally:
        storage.dispose()


def test_without_the_option_pgbouncer_is_one_clear_error(pgbouncer: PgBouncer) -> None:
    plain = pgbouncer.url.split("?")[0]
    with pytest.raises(pbtune.StorageError, match=r"add \?pbtune_pooler=transaction"):
        pbtune.Storage(plain)
