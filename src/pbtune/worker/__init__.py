"""Workers: the ask -> train -> tell loop, the local process backend and the Ray backend."""

from pbtune.trial import TrainFn
from pbtune.worker._command import Command
from pbtune.worker._deadline import Deadline, TimedOut, check_timeout, raising_at
from pbtune.worker._devices import DevicePlan, DeviceSpec, plan_devices
from pbtune.worker._loop import (
    IDLE_POLL_MAX_S,
    POLL_INTERVAL_MAX_S,
    POLL_INTERVAL_S,
    WORKER_APPLICATION,
    new_worker_id,
    run_worker,
)
from pbtune.worker._process import Entry, fail_dead_local_workers, run_processes, run_threads
from pbtune.worker._ray import RayBackend, run_ray
from pbtune.worker._sendable import check_takes_trial
from pbtune.worker._start import start_server

__all__ = [
    "IDLE_POLL_MAX_S",
    "POLL_INTERVAL_MAX_S",
    "POLL_INTERVAL_S",
    "WORKER_APPLICATION",
    "Command",
    "Deadline",
    "DevicePlan",
    "DeviceSpec",
    "Entry",
    "RayBackend",
    "TimedOut",
    "TrainFn",
    "check_takes_trial",
    "check_timeout",
    "fail_dead_local_workers",
    "new_worker_id",
    "plan_devices",
    "raising_at",
    "run_processes",
    "run_ray",
    "run_threads",
    "run_worker",
    "start_server",
]
