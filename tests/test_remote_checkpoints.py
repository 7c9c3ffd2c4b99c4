"""Remote checkpoints: an S3 API served locally by moto, and fsspec's memory file system.

The S3 tests need moto[server], s3fs and boto3 (the ``dev`` extra); without them they are
skipped with a message saying so.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import CheckpointError, ConfigError, TrialState
from pbtune import checkpoints as _store
from pbtune.checkpoints import as_location, is_url
from pbtune.worker import run_worker

HERE = Path(__file__).resolve().parent
TRAINERS = HERE / "e2e" / "trainers.py"
SPACE = {"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)}
MISSING = "remote checkpoint tests need the dev extra: pip install -e '.[dev]' (fsspec, s3fs, moto)"


def _need(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module, reason=MISSING)


# -- locations ----------------------------------------------------------------------------------


def test_urls_stay_strings_and_paths_stay_paths() -> None:
    assert as_location("s3://bucket/a/trial-000001") == "s3://bucket/a/trial-000001"
    assert as_location("file:///tmp/x") == "file:///tmp/x"
    assert as_location("/tmp/x") == Path("/tmp/x")
    assert is_url("gs://b") and not is_url("/tmp/x") and not is_url("relative/dir")


def test_the_core_imports_and_runs_locally_without_fsspec(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "import pbtune\n"
        f"pbtune.create_study('s', space={{'x': pbtune.Float(0, 1)}}, metric='m', storage=None,"
        f" checkpoint_root={str(tmp_path)!r})\n"
        "try:\n"
        "    pbtune.create_study('r', space={'x': pbtune.Float(0, 1)}, metric='m',"
        " storage=None, checkpoint_root='s3://bucket/x')\n"
        "except pbtune.ConfigError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'pbtune[remote]'" in out


def test_an_unknown_protocol_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    _need("fsspec")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(ConfigError, match=r"fsspec knows no protocol 'nosuch'"):
        pbtune.create_study("s", space=SPACE, metric="q", storage=url,
                            checkpoint_root="nosuch://bucket/x")
    with pytest.raises(ConfigError, match=r"names no bucket"):
        pbtune.create_study("s", space=SPACE, metric="q", storage=url, checkpoint_root="s3://")
    with pytest.raises(pbtune.StudyNotFoundError):
        pbtune.load_study("s", storage=url)


def test_a_run_file_keeps_a_url_root_as_it_is(tmp_path: Path) -> None:
    from pbtune.cli._config import _checkpoint_root

    assert _checkpoint_root("s3://bucket/runs", tmp_path) == "s3://bucket/runs"
    assert _checkpoint_root("ckpt", tmp_path) == tmp_path / "ckpt"


# -- the store on fsspec's memory file system (no server) -------------------------------------


@pytest.fixture
def memory_store() -> Iterator[_store.CheckpointStore]:
    _need("fsspec")
    root = f"memory://pbtune-test-{uuid.uuid4().hex[:8]}"
    _store.check_root(root)
    store = _store.open_store(_store.resolve_root(root + "/"), "study-1")
    yield store
    store.close()


def _stage(store: _store.CheckpointStore, number: int) -> Path:
    staging = store.stage(number, uuid.uuid4().hex)
    (staging / "w.bin").write_bytes(b"weights" * 100)
    (staging / "sub").mkdir()
    (staging / "sub" / "state.json").write_text('{"step": 3}')
    return staging


def test_commit_uploads_files_then_the_manifest(memory_store: Any) -> None:
    import fsspec

    ref = memory_store.commit(_stage(memory_store, 1), 1)
    assert ref == f"{memory_store.location}/trial-000001"
    fs = fsspec.filesystem("memory")
    manifest = json.loads(fs.cat_file(f"{ref}/_pbtune_manifest.json"))
    assert sorted(e["name"] for e in manifest["files"]) == ["sub/state.json", "w.bin"]
    local = memory_store.open(ref, 1)
    assert (local / "sub" / "state.json").read_text() == '{"step": 3}'
    assert (local / "w.bin").stat().st_mode & 0o222 == 0  # read-only
    assert memory_store.open(ref, 1) == local  # reused from the cache
    with pytest.raises(CheckpointError, match="exists already"):
        memory_store.commit(_stage(memory_store, 1), 1)


def test_a_download_that_does_not_match_the_manifest_fails(memory_store: Any) -> None:
    import fsspec

    ref = memory_store.commit(_stage(memory_store, 2), 2)
    fsspec.filesystem("memory").pipe_file(f"{ref}/w.bin", b"changed")
    with pytest.raises(CheckpointError, match=r"trial 7 .* does not match its manifest"):
        memory_store.open(ref, 7)
    fsspec.filesystem("memory").rm_file(f"{ref}/_pbtune_manifest.json")
    with pytest.raises(CheckpointError, match="has no manifest"):
        memory_store.open(ref, 7)


def test_remove_and_sweep_stay_inside_the_study(memory_store: Any) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    kept = memory_store.commit(_stage(memory_store, 3), 3)
    gone = memory_store.commit(_stage(memory_store, 4), 4)
    fs.pipe_file(f"{memory_store.location}/trial-000005/half-uploaded.bin", b"x")
    with pytest.raises(CheckpointError, match="outside"):
        memory_store.remove(memory_store.location + "-other/trial-000001")
    memory_store.remove(gone)
    assert not fs.exists(f"{gone}/w.bin")
    assert memory_store.sweep({kept}) == 1  # the partial upload
    fs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(memory_store.location, detail=False))
    assert names == ["trial-000003"]


# -- S3 served by moto ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    _need("fsspec", "s3fs", "boto3", "moto.server")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket; the AWS_* variables reach the spawned worker processes too."""
    import boto3
    import s3fs

    for key, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"pbtune-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem.clear_instance_cache()


def _keys(bucket: str, prefix: str = "") -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix
    )
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _trial_prefixes(bucket: str, study: pbtune.Study) -> set[str]:
    base = str(study.checkpoint_dir).removeprefix(f"s3://{bucket}/") + "/"
    return {key[len(base):].split("/")[0] for key in _keys(bucket, base)}


def test_a_pbt_study_runs_on_s3_with_two_worker_processes(tmp_path: Path, bucket: str) -> None:
    import boto3

    from e2e import trainers

    study = pbtune.create_study(
        "remote", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE, metric="q",
        population_size=4, steps_per_trial=4, max_steps=24, keep_best=2,
        checkpoint_root=f"s3://{bucket}/study",
        exploit=trainers.CopyAhead(),  # some trials copy, whatever order they finish in
    )
    assert study.checkpoint_dir == f"s3://{bucket}/study/{study._record.checkpoint_dir}"
    assert _keys(bucket) == []  # the probe object was deleted
    # What a worker killed mid-upload leaves: files under a prefix without a manifest.
    orphan = str(study.checkpoint_dir).removeprefix(f"s3://{bucket}/") + "/trial-999999/w.bin"
    boto3.client("s3").put_object(Bucket=bucket, Key=orphan, Body=b"half")

    study.optimize(f"{TRAINERS}:warm_started", workers=2, show_progress=False)

    trials = study.trials()
    assert study.state == pbtune.StudyState.COMPLETE
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert any(t.decision == "exploit" for t in trials)  # children copied other members
    assert sum(t.parent_id is not None for t in trials) >= len(trials) - 4
    kept = {t.checkpoint for t in trials if t.checkpoint is not None}
    assert all(isinstance(c, str) and c.startswith(f"s3://{bucket}/study/") for c in kept)
    assert len(kept) <= study.config.population_size + study.config.keep_best
    # GC and the sweep leave exactly the recorded checkpoints, each whole.
    assert _trial_prefixes(bucket, study) == {str(c).rsplit("/", 1)[1] for c in kept}
    for ref in kept:
        key = str(ref).removeprefix(f"s3://{bucket}/")
        assert f"{key}/_pbtune_manifest.json" in _keys(bucket, key + "/")
        assert f"{key}/theta.json" in _keys(bucket, key + "/")
    # The URL survives the database round trip, and the CLI prints it as it is.
    again = pbtune.load_study("remote", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert {t.checkpoint for t in again.trials() if t.checkpoint} == kept


def test_a_tampered_manifest_fails_the_child_clearly(bucket: str) -> None:
    import boto3

    study = pbtune.create_study(
        "tamper", storage=None, space=SPACE, metric="q", population_size=2,
        steps_per_trial=2, max_steps=6, max_retries=0, checkpoint_root=f"s3://{bucket}/t",
    )
    from e2e import trainers

    assert run_worker(study.storage, "tamper", trainers.warm_started, max_trials=2) == 2
    parents = [t for t in study.trials() if t.checkpoint is not None]
    assert len(parents) == 2
    s3 = boto3.client("s3")
    for parent in parents:
        key = str(parent.checkpoint).removeprefix(f"s3://{bucket}/") + "/_pbtune_manifest.json"
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for entry in manifest["files"]:
            entry["sha256"] = "0" * 64
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())

    run_worker(study.storage, "tamper", trainers.warm_started, max_trials=2)
    run_worker(study.storage, "tamper", trainers.warm_started)  # to the end

    damaged = {p.id for p in parents}
    trials = {t.id: t for t in study.trials()}
    children = [t for t in trials.values() if t.parent_id in damaged]
    assert children and all(t.state == TrialState.FAILED for t in children)
    assert all(t.error is not None and "CheckpointGoneError" in t.error for t in children)
    for parent in damaged:  # found damaged once; a child queued before then says so
        found = [t for t in children if t.parent_id == parent
                 and "does not match its manifest" in str(t.error)]
        assert len(found) == 1 and "pbtune recorded it as gone" in str(found[0].error)
    # Recorded as gone, so that no retry warm-starts from them; a member whose
    # checkpoint was damaged is not lost for it (max_retries=0 here).
    assert all(trials[i].checkpoint is None and trials[i].checkpoint_gone is not None
               for i in damaged)
    assert study.state == pbtune.StudyState.COMPLETE
    done = [t for t in study.trials() if t.state == TrialState.COMPLETE and t.end_step == 6]
    assert sorted({t.member for t in done}) == [0, 1]


def test_a_missing_bucket_is_refused_before_anything_is_recorded(
    tmp_path: Path, bucket: str
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(CheckpointError, match=r"s3://no-such-bucket-pbtune/x.*cannot be written"):
        pbtune.create_study("s", space=SPACE, metric="q", storage=url,
                            checkpoint_root="s3://no-such-bucket-pbtune/x")
    with pytest.raises(pbtune.StudyNotFoundError):
        pbtune.load_study("s", storage=url)
    study = pbtune.create_study("s", space=SPACE, metric="q", storage=url,
                                checkpoint_root=f"s3://{bucket}/x/")
    assert study.config.checkpoint_root == f"s3://{bucket}/x"


def test_missing_s3fs_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _need("fsspec")
    import fsspec  # noqa: F401 (loads fsspec.registry)

    monkeypatch.setitem(sys.modules, "s3fs", None)
    registered = sys.modules["fsspec.registry"]._registry  # forget an imported s3fs
    monkeypatch.delitem(registered, "s3", raising=False)
    with pytest.raises(ConfigError, match=r"pbtune\[remote\]"):
        pbtune.create_study("s", space=SPACE, metric="q", storage=None,
                            checkpoint_root="s3://bucket/x")


def test_a_file_url_root_creates_its_folders(tmp_path: Path) -> None:
    """``file:///abs/path`` goes through fsspec's local file system, whose writes do not
    create folders: a commit makes them, sub-folders of the checkpoint too."""
    _need("fsspec")
    root = f"file://{tmp_path / 'remote'}"
    _store.check_root(root)
    store = _store.open_store(_store.resolve_root(root + "/"), "study-1")
    try:
        ref = store.commit(_stage(store, 1), 1)
        local = store.open(ref, 1)
        assert (local / "sub" / "state.json").read_text() == '{"step": 3}'
        assert (tmp_path / "remote" / "study-1" / "trial-000001" / "w.bin").is_file()
    finally:
        store.close()
