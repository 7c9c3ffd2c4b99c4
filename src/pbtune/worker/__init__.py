"""Workers: the ask -> train -> tell loop and the local process backend."""

from pbtune.worker._command import Command
from pbtune.worker._loop import TrainFn, new_worker_id, run_trial, run_worker

__all__ = ["Command", "TrainFn", "new_worker_id", "run_trial", "run_worker"]
