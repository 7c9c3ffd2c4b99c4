"""The write gate that makes SQLite writers take turns (pbtune.storages._gate), and the
schema version upgrade of a SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

from pbtune.storages._gate import WriteGate


def test_two_gates_on_one_database_exclude_each_other(tmp_path: Path) -> None:
    db = str(tmp_path / "study.db")
    first, second = WriteGate(db), WriteGate(db)  # two open files: as two processes
    entered = threading.Event()

    def writer() -> None:
        with second.held():
            entered.set()

    with first.held():
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not entered.is_set()  # waits while the first holds
    thread.join()
    assert entered.is_set()  # and goes on once it lets go


def test_the_gate_is_reentrant_within_a_thread(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "study.db"))
    with gate.held(), gate.held():
        pass
    with gate.held():  # released fully: taken again
        pass


def test_the_lock_file_is_beside_the_database_and_goes_when_the_gate_closes(
        tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "study.db"))
    with gate.held():
        assert [p.name for p in tmp_path.iterdir()] == ["study.db-pbtune.lock"]
    gate.close()
    assert list(tmp_path.iterdir()) == []


def test_a_gate_that_another_holds_stays_and_a_removed_one_is_made_again(
        tmp_path: Path) -> None:
    db = str(tmp_path / "study.db")
    first, second = WriteGate(db), WriteGate(db)
    with second.held():
        first.close()  # second holds it: the file stays
        assert Path(second.path).exists()
    second.close()
    assert not Path(second.path).exists()
    with first.held():  # a later writer makes it again
        assert Path(first.path).exists()
    first.close()


def test_different_databases_have_different_gates(tmp_path: Path) -> None:
    assert WriteGate(str(tmp_path / "a.db")).path != WriteGate(str(tmp_path / "b.db")).path
    # one database named two ways is one gate
    (tmp_path / "sub").mkdir()
    same = WriteGate(str(tmp_path / "sub" / ".." / "a.db")).path
    assert same == WriteGate(str(tmp_path / "a.db")).path
