"""Checkpoint directories: atomic commit, guarded removal, sweeping, safe names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbtune import CheckpointError
from pbtune.checkpoints import _local as checkpoints
from pbtune.checkpoints import study_dir_name


def staged(study_dir: Path, number: int = 1, claim: str = "abcdef0123456789") -> Path:
    path = checkpoints.make_staging_dir(study_dir, number, claim)
    (path / "model.bin").write_bytes(b"\x00\x01weights")
    (path / "sub").mkdir()
    (path / "sub" / "state.json").write_text('{"step": 10}')
    return path


# -- staging and commit -----------------------------------------------------------------------


def test_staging_dirs_live_apart_from_final_dirs(tmp_path: Path) -> None:
    path = checkpoints.make_staging_dir(tmp_path / "study", 7, "0123456789abcdefXYZ")
    assert path.is_dir()
    assert path.parent == tmp_path / "study" / checkpoints.STAGING
    assert path.name == "trial-000007-0123456789ab"
    assert checkpoints.final_dir(tmp_path / "study", 7) == tmp_path / "study" / "trial-000007"


def test_staging_dir_left_by_a_crashed_attempt_is_emptied(tmp_path: Path) -> None:
    first = staged(tmp_path)
    again = checkpoints.make_staging_dir(tmp_path, 1, "abcdef0123456789")
    assert again == first
    assert list(again.iterdir()) == []


def test_staging_dir_that_cannot_be_made_is_a_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match=r"cannot create checkpoint directory.*writable"):
        checkpoints.make_staging_dir(blocker, 1, "claim")


def test_commit_moves_the_whole_directory(tmp_path: Path) -> None:
    staging = staged(tmp_path)
    final = checkpoints.final_dir(tmp_path, 1)
    assert checkpoints.commit(staging, final) == final
    assert not staging.exists()
    assert (final / "model.bin").read_bytes() == b"\x00\x01weights"
    assert (final / "sub" / "state.json").read_text() == '{"step": 10}'
    for path in (final / "model.bin", final / "sub" / "state.json"):
        assert path.stat().st_mode & 0o222 == 0  # a child cannot change its parent's files
    checkpoints.remove(final, tmp_path)  # ... and read-only files are still collected
    assert not final.exists()


def test_commit_syncs_everything_before_the_final_name_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = staged(tmp_path)
    final = checkpoints.final_dir(tmp_path, 1)
    synced: list[Path] = []
    real_sync_file = checkpoints._seal_file

    def sync_file(path: Path) -> None:
        assert not final.exists(), "the final directory appeared before its files were synced"
        synced.append(path)
        real_sync_file(path)

    synced_dirs: list[tuple[Path, bool]] = []
    real_sync_dir = checkpoints._fsync_dir

    def sync_dir(path: Path) -> None:
        synced_dirs.append((path, final.exists()))
        real_sync_dir(path)

    monkeypatch.setattr(checkpoints, "_seal_file", sync_file)
    monkeypatch.setattr(checkpoints, "_fsync_dir", sync_dir)
    checkpoints.commit(staging, final)
    assert sorted(p.name for p in synced) == ["model.bin", "state.json"]
    # the directories (and the staging directory itself) before the rename ...
    assert (staging, False) in synced_dirs
    assert (staging / "sub", False) in synced_dirs
    # ... and the parent afterwards, so the rename itself is durable
    assert synced_dirs[-1] == (final.parent, True)


def test_a_failed_rename_leaves_no_final_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = staged(tmp_path)
    final = checkpoints.final_dir(tmp_path, 1)

    def broken_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError):
        checkpoints.commit(staging, final)
    assert not final.exists()
    assert (staging / "model.bin").exists()


def test_commit_refuses_to_overwrite(tmp_path: Path) -> None:
    final = checkpoints.final_dir(tmp_path, 1)
    final.mkdir(parents=True)
    (final / "model.bin").write_text("the committed one")
    staging = staged(tmp_path)
    with pytest.raises(CheckpointError, match=r"exists already; refusing to replace it"):
        checkpoints.commit(staging, final)
    assert (final / "model.bin").read_text() == "the committed one"
    assert (staging / "model.bin").exists()


def test_commit_of_an_empty_directory(tmp_path: Path) -> None:
    staging = checkpoints.make_staging_dir(tmp_path, 3, "c")
    final = checkpoints.commit(staging, checkpoints.final_dir(tmp_path, 3))
    assert final.is_dir() and list(final.iterdir()) == []


def test_commit_keeps_symlinks(tmp_path: Path) -> None:
    staging = staged(tmp_path)
    (staging / "link").symlink_to(tmp_path / "does-not-exist")
    final = checkpoints.commit(staging, checkpoints.final_dir(tmp_path, 1))
    assert (final / "link").is_symlink()


# -- remove --------------------------------------------------------------------------------------


def test_remove_deletes_a_checkpoint_inside_the_study(tmp_path: Path) -> None:
    study = tmp_path / "study"
    final = checkpoints.commit(staged(study), checkpoints.final_dir(study, 1))
    checkpoints.remove(final, study)
    assert not final.exists()
    assert study.is_dir()
    checkpoints.remove(final, study)  # already gone: nothing to do


@pytest.mark.parametrize(
    "target",
    [
        lambda root: root / "outside",
        lambda root: root / "study" / ".." / "outside",
        lambda root: root / "study",
        lambda root: root / "study" / ".",
        lambda root: root,
        lambda root: Path("/"),
        lambda root: root / "study-other" / "trial-000001",
    ],
)
def test_remove_refuses_paths_outside_the_study_dir(tmp_path: Path, target: object) -> None:
    study = tmp_path / "study"
    study.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious").write_text("keep me")
    (tmp_path / "study-other" / "trial-000001").mkdir(parents=True)
    path = target(tmp_path)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=r"refusing to delete .* it is outside"):
        checkpoints.remove(path, study)
    assert (tmp_path / "outside" / "precious").read_text() == "keep me"
    assert (tmp_path / "study-other" / "trial-000001").is_dir()
    assert study.is_dir()


def test_remove_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (study / "trial-000001").symlink_to(outside)
    with pytest.raises(CheckpointError):
        checkpoints.remove(study / "trial-000001", study)
    assert (outside / "precious").read_text() == "keep me"


# -- sweep ---------------------------------------------------------------------------------------


def test_sweep_deletes_unreferenced_and_staged_directories(tmp_path: Path) -> None:
    study = tmp_path / "study"
    kept = checkpoints.commit(staged(study, 1), checkpoints.final_dir(study, 1))
    dropped = checkpoints.commit(staged(study, 2), checkpoints.final_dir(study, 2))
    leftover = staged(study, 3)  # a crashed trial's staging directory
    (study / "notes.txt").write_text("the user's file")
    (study / "results").mkdir()
    assert checkpoints.sweep(study, {kept}) == 1
    assert kept.is_dir() and (kept / "model.bin").exists()
    assert not dropped.exists()
    assert not leftover.exists()
    assert not (study / checkpoints.STAGING).exists()
    assert (study / "notes.txt").read_text() == "the user's file"
    assert (study / "results").is_dir()


def test_sweep_matches_kept_paths_however_they_are_spelled(tmp_path: Path) -> None:
    study = tmp_path / "study"
    kept = checkpoints.commit(staged(study, 1), checkpoints.final_dir(study, 1))
    spelled = study / ".." / "study" / kept.name
    assert checkpoints.sweep(study, {spelled}) == 0
    assert kept.is_dir()


def test_sweep_of_a_missing_directory(tmp_path: Path) -> None:
    assert checkpoints.sweep(tmp_path / "never-made", set()) == 0


# -- study directory names -------------------------------------------------------------------

# Portable characters only, and never a leading dot (no ".", "..", or hidden directory).
SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@pytest.mark.parametrize(
    "name",
    ["../../etc", "..", ".", "/", "a/b/c", "/abs/path", "..\\..\\win", 'q"u\'o`te', "日本語",
     "emoji 🚀", "", " ", "\x00nul", "a" * 500, "con", ".hidden", "-dash", "x:y*z?<>|"],
)
def test_study_dir_name_is_safe(tmp_path: Path, name: str) -> None:
    dirname = study_dir_name(name, "salt")
    assert SAFE.match(dirname), dirname
    assert len(dirname) <= 48 + 9
    path = tmp_path / dirname
    assert path.resolve().parent == tmp_path.resolve()
    path.mkdir()  # a real directory can be made with it


def test_study_dir_name_keeps_readable_names_and_tells_studies_apart() -> None:
    name = study_dir_name("digits_lr-sweep.v2", "salt")
    assert name.startswith("digits_lr-sweep.v2-")
    assert study_dir_name("digits_lr-sweep.v2", "salt") == name
    assert study_dir_name("digits_lr-sweep.v2", "pepper") != name
    # names that slug alike still get their own directories
    assert study_dir_name("a/b", "salt") != study_dir_name("a_b", "salt")
    assert study_dir_name("...", "salt").startswith("study-")


@given(name=st.text(), salt=st.text(max_size=8))
def test_study_dir_name_is_always_one_plain_path_component(name: str, salt: str) -> None:
    dirname = study_dir_name(name, salt)
    assert SAFE.match(dirname), dirname
    assert dirname not in (".", "..")
    assert os.sep not in dirname and "/" not in dirname
    assert len(dirname) <= 57
