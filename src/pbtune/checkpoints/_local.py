"""Checkpoints in a local (or shared) directory: staged, committed atomically, collected.

A trial writes into a fresh staging directory; on success pbtune fsyncs it and renames it
to its final name. A directory under its final name is therefore always whole. A child
reads its parent's final directory in place (no copy).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Set
from pathlib import Path
from typing import Any

from pbtune._errors import CheckpointError, CheckpointGoneError, ConfigError
from pbtune.checkpoints._location import Location
from pbtune.checkpoints._store import CheckpointExistsError, CheckpointStore

STAGING = ".staging"


def resolve_local_root(root: Any) -> Path:
    """``checkpoint_root`` as an absolute path, or a `ConfigError` that says why it is not."""
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise ConfigError(f"checkpoint_root must be the path of a directory, got {root!r}")
    try:
        return Path(root).expanduser().resolve()
    except (RuntimeError, ValueError, OSError) as error:  # "~nobody/x", a NUL byte
        raise ConfigError(f"checkpoint_root {str(root)!r} is not a usable path: {error}") from None


def check_local_root(root: Path) -> None:
    """Refuse, before anything is recorded, a ``root`` no checkpoint could be written under."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointError(
            f"checkpoint_root {str(root)!r} cannot be used: {str(existing)!r} is not a "
            "directory; pass a directory (it is created if missing)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckpointError(
            f"checkpoint_root {str(root)!r} is not writable: {str(existing)!r} is read-only "
            "for this user; pass a writable directory"
        )


def final_dir(study_dir: Path, number: int) -> Path:
    return study_dir / f"trial-{number:06d}"


def make_staging_dir(study_dir: Path, number: int, claim: str) -> Path:
    path = study_dir / STAGING / f"trial-{number:06d}-{claim[:12]}"
    try:
        path.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    except OSError as error:
        raise CheckpointError(
            f"cannot create checkpoint directory {str(path)!r}: {error.strerror}; "
            "check that checkpoint_root is writable"
        ) from None
    return path


def commit(staging: Path, final: Path) -> Path:
    """Make ``staging`` durable, then rename it to ``final`` in one step."""
    if final.exists():
        raise CheckpointExistsError(
            f"checkpoint {str(final)!r} exists already; refusing to replace it"
        )
    for root, dirs, files in os.walk(staging):
        for name in files:
            _seal_file(Path(root) / name)
        for name in dirs:
            _fsync_dir(Path(root) / name)
    _fsync_dir(staging)
    os.rename(staging, final)
    _fsync_dir(final.parent)
    return final


def remove(path: Path, study_dir: Path) -> None:
    """Delete a checkpoint directory, never anything outside the study's directory."""
    resolved = path.resolve()
    base = study_dir.resolve()
    if base not in resolved.parents:
        raise CheckpointError(f"refusing to delete {str(path)!r}: it is outside {str(base)!r}")
    shutil.rmtree(resolved, ignore_errors=True)


def sweep(study_dir: Path, keep: set[Path]) -> int:
    """Delete committed and staged directories that no trial refers to (end of a run)."""
    if not study_dir.is_dir():
        return 0
    kept = {p.resolve() for p in keep}
    removed = 0
    for child in study_dir.iterdir():
        if child.name == STAGING or not child.name.startswith("trial-"):
            continue
        if child.resolve() not in kept:
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    shutil.rmtree(study_dir / STAGING, ignore_errors=True)
    return removed


def _seal_file(path: Path) -> None:
    """fsync a checkpoint file and clear its write bits: children read a committed
    checkpoint in place, and a careless child must not change its parent's files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # a symlink: nothing of ours to make durable
        if path.is_symlink():
            return
        raise
    try:
        mode = os.fstat(fd).st_mode
        os.fchmod(fd, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


class LocalStore(CheckpointStore):
    """Checkpoints in a local or shared directory: rename to commit, read in place."""

    location: Path

    def __init__(self, study_dir: Path) -> None:
        self.location = self.study_dir = study_dir

    def stage(self, number: int, claim: str) -> Path:
        return make_staging_dir(self.study_dir, number, claim)

    def final(self, number: int) -> Path:
        return final_dir(self.study_dir, number)

    def commit(self, staging: Path, number: int) -> Path:
        return commit(staging, self.final(number))

    def open(self, reference: Location, trial_id: int) -> Path:
        path = Path(reference)
        if not path.is_dir():
            raise CheckpointGoneError(
                f"the checkpoint of trial {trial_id} ({path}) is gone: it was deleted from "
                "outside pbtune, or this machine does not see checkpoint_root (every worker "
                "must see it at the same path, on a shared file system)"
            )
        return path

    def remove(self, reference: Location) -> None:
        remove(Path(reference), self.study_dir)

    def sweep(self, keep: Set[Location]) -> int:
        return sweep(self.study_dir, {Path(k) for k in keep})

    def destroy(self) -> None:
        # The study's own folder (named after the study and a random salt), never its root.
        assert self.study_dir.name and self.study_dir != self.study_dir.parent
        if self.study_dir.is_symlink():
            self.study_dir.unlink()
        elif self.study_dir.exists():
            shutil.rmtree(self.study_dir)
