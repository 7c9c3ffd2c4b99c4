"""Checkpoint storage: a study's checkpoints in a local directory or under an fsspec URL.

A trial writes into a local staging directory that becomes its committed checkpoint whole
or not at all; children read committed checkpoints as local, read-only directories.
"""

from pbtune.checkpoints._local import LocalStore
from pbtune.checkpoints._location import Location, as_location, is_url
from pbtune.checkpoints._open import check_root, open_store, resolve_root, study_dir_name
from pbtune.checkpoints._store import CheckpointExistsError, CheckpointStore

__all__ = [
    "CheckpointExistsError",
    "CheckpointStore",
    "LocalStore",
    "Location",
    "as_location",
    "check_root",
    "is_url",
    "open_store",
    "resolve_root",
    "study_dir_name",
]
