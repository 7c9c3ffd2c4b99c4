"""The exceptions pbtune raises for errors a user can cause."""

from __future__ import annotations


class PbtuneError(Exception):
    """Base class of every error pbtune raises on purpose."""


class SearchSpaceError(PbtuneError, ValueError):
    """A search space or a parameter value is invalid."""


class ConfigError(PbtuneError, ValueError):
    """A study setting (budget, metric, strategy, YAML file) is invalid."""


class StorageError(PbtuneError):
    """The storage cannot be opened, or holds something pbtune cannot use."""


class StudyNotFoundError(StorageError, KeyError):
    """No study of that name exists in the storage."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicatedStudyError(StorageError):
    """A study of that name exists already and `load_if_exists` was False."""


class TrialFailedError(PbtuneError):
    """A training function's result cannot be used (raised, NaN, missing metric)."""


class StudyFailedError(PbtuneError):
    """The study cannot go on, for example because every first trial failed."""


class CheckpointError(PbtuneError):
    """A checkpoint is missing or cannot be written."""


class CheckpointGoneError(CheckpointError):
    """A committed checkpoint is missing or damaged: deleted from outside pbtune (a disk
    cleaned by hand, a bucket's lifecycle rule) or changed after its commit. The study
    records it as gone the first time it is found so, and no trial warm-starts from it
    again: the trial that needed it goes on from another parent (see the README's "Fault
    tolerance")."""


class MissingExtraError(ConfigError, ImportError):
    """An optional integration's library is not installed; the message names the extra to
    install. An `ImportError` too, so ``except ImportError`` around an optional import works."""
