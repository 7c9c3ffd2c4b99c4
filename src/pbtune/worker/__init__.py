"""Workers: the ask -> train -> tell loop, the local process backend and the Ray backend."""

from pbtune.trial import TrainFn
from pbtune.worker._command import Command
from pbtune.worker._loop import new_worker_id, run_worker
from pbtune.worker._ray import RayBackend

__all__ = ["Command", "RayBackend", "TrainFn", "new_worker_id", "run_worker"]
