"""Where committed checkpoints live: a local directory or an fsspec URL.

The worker loop, garbage collection and the end-of-run sweep talk to one `CheckpointStore`;
only `open_store` knows which kind a study uses. Either way the training function sees
local directories: it writes into a local staging directory, and reads its parent's
checkpoint from a local directory (in place for a local store, a verified download for a
remote one).

Example::

    store = open_store("s3://bucket/runs", "digits-1a2b3c4d")
    staging = store.stage(number=7, claim=token)
    ...  # the training function writes into staging
    reference = store.commit(staging, 7)  # then tell records it
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Set
from pathlib import Path
from typing import Any

from pbtune._errors import TrialFailedError
from pbtune._location import Location, is_url
from pbtune.controller import _checkpoints as checkpoints


class CheckpointStore(ABC):
    """Stages, commits, opens and deletes the checkpoints of one study."""

    location: Location  # the study's directory (local) or URL prefix (remote)

    @abstractmethod
    def stage(self, number: int, claim: str) -> Path:
        """A fresh, empty local directory for trial ``number``'s checkpoint."""

    @abstractmethod
    def final(self, number: int) -> Location:
        """Where trial ``number``'s checkpoint is once committed."""

    @abstractmethod
    def commit(self, staging: Path, number: int) -> Location:
        """Make ``staging`` trial ``number``'s committed checkpoint, whole or not at all;
        return its reference (what the database records)."""

    @abstractmethod
    def open(self, reference: Location, trial_id: int) -> Path:
        """A local, read-only directory holding the checkpoint of trial ``trial_id``."""

    @abstractmethod
    def remove(self, reference: Location) -> None:
        """Delete a committed checkpoint (never anything outside this study's location)."""

    @abstractmethod
    def sweep(self, keep: Set[Location]) -> int:
        """Delete the checkpoints and partial uploads no trial refers to; return the count."""

    def discard(self, staging: Path | None) -> None:
        """Delete a staging directory that will not be committed."""
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:  # noqa: B027 (most stores hold nothing)
        """Free what this process holds (a download cache)."""


class LocalStore(CheckpointStore):
    """Checkpoints in a local or shared directory: rename to commit, read in place."""

    location: Path

    def __init__(self, study_dir: Path) -> None:
        self.location = self.study_dir = study_dir

    def stage(self, number: int, claim: str) -> Path:
        return checkpoints.make_staging_dir(self.study_dir, number, claim)

    def final(self, number: int) -> Path:
        return checkpoints.final_dir(self.study_dir, number)

    def commit(self, staging: Path, number: int) -> Path:
        return checkpoints.commit(staging, self.final(number))

    def open(self, reference: Location, trial_id: int) -> Path:
        path = Path(reference)
        if not path.is_dir():
            raise TrialFailedError(
                f"the checkpoint of parent trial {trial_id} ({path}) is not on this machine; "
                "every worker must see checkpoint_root at the same path (a shared file "
                "system), and nothing else may delete it"
            )
        return path

    def remove(self, reference: Location) -> None:
        checkpoints.remove(Path(reference), self.study_dir)

    def sweep(self, keep: Set[Location]) -> int:
        return checkpoints.sweep(self.study_dir, {Path(k) for k in keep})


def resolve_root(root: Any) -> str:
    """``checkpoint_root`` as stored: an absolute path, or a URL without a trailing "/"."""
    if isinstance(root, str) and is_url(root.strip()):
        from pbtune.controller import _remote

        return _remote.normalize_url(root.strip())
    return str(checkpoints.resolve_root(root))


def check_root(root: str) -> None:
    """Refuse, before anything is recorded, a root no checkpoint could be written under."""
    if is_url(root):
        from pbtune.controller import _remote

        _remote.check_url(root)
    else:
        checkpoints.check_root(Path(root))


def open_store(root: str, study_dir_name: str) -> CheckpointStore:
    """The store of a study whose ``checkpoint_root`` is ``root`` (a path or a URL)."""
    if is_url(root):
        from pbtune.controller import _remote

        return _remote.RemoteStore(root, study_dir_name)
    return LocalStore(Path(root) / study_dir_name)
