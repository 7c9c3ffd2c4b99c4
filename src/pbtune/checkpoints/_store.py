"""Where committed checkpoints live: a local directory or an fsspec URL.

The controller, garbage collection and the end-of-run sweep talk to one `CheckpointStore`;
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

from pbtune._errors import CheckpointError
from pbtune.checkpoints._location import Location


class CheckpointExistsError(CheckpointError):
    """A commit found its trial's checkpoint there already, and wrote nothing: another run
    of the same trial committed it (a trial put back in the queue at a run's timeout runs
    again under its own number, while a training thread that could not be stopped may
    still finish the first run)."""


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
        return its reference (what the database records). Raises `CheckpointExistsError`,
        having written nothing, if that checkpoint exists already."""

    @abstractmethod
    def open(self, reference: Location, trial_id: int) -> Path:
        """A local, read-only directory holding the checkpoint of trial ``trial_id``."""

    @abstractmethod
    def remove(self, reference: Location) -> None:
        """Delete a committed checkpoint (never anything outside this study's location)."""

    @abstractmethod
    def sweep(self, keep: Set[Location]) -> int:
        """Delete the checkpoints and partial uploads no trial refers to; return the count."""

    def destroy(self) -> None:
        """Delete the study's whole location, every checkpoint in it (the study itself is
        being deleted); a location that does not exist is no error."""
        self.sweep(set())

    def discard(self, staging: Path | None) -> None:
        """Delete a staging directory that will not be committed."""
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:  # noqa: B027 (most stores hold nothing)
        """Free what this process holds (a download cache)."""
