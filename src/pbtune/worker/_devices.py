"""GPUs for local worker processes: which devices each one sees, through the
``CUDA_VISIBLE_DEVICES`` it starts with.

``devices`` (a list, ``"0,1,2,3"`` or ``"auto"``) and ``gpus_per_worker`` become a plan:
disjoint groups of devices, one per worker process slot (trainers first, then dedicated
evaluators), shared round-robin when there are more processes than groups. A slot keeps
its group when its process is replaced. The parent never imports a CUDA library to count
GPUs: ``"auto"`` reads ``CUDA_VISIBLE_DEVICES``, ``nvidia-smi -L`` or
``/proc/driver/nvidia/gpus``.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pbtune._errors import ConfigError

_log = logging.getLogger("pbtune.worker")

VISIBLE = "CUDA_VISIBLE_DEVICES"
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees
NVIDIA_SMI_TIMEOUT_S = 15.0
AUTO = "auto"
_GPU_LINE = re.compile(r"^GPU (\d+):")
_MIG_LINE = re.compile(r"^\s+MIG\b.*\(UUID: (MIG-[^)\s]+)\)")
_UUID = re.compile(r"^(GPU|MIG)-[^\s,]+$")

Devices = tuple[str, ...]
"""One process's devices, as ``CUDA_VISIBLE_DEVICES`` entries: ``("0", "1")``, ``("GPU-..",)``."""
DeviceSpec = str | Sequence[int | str] | None
"""What a user passes as ``devices=``: ``[0, 1]``, ``"0,1"``, ``["GPU-..."]``, ``"auto"``."""


@dataclass(frozen=True)
class DevicePlan:
    """How many worker processes run, and the devices of each slot (None: no assignment;
    the processes inherit this process's environment as before)."""

    workers: int
    slots: tuple[Devices, ...] | None = None

    def slot(self, index: int) -> Devices | None:
        return None if self.slots is None else self.slots[index]


def plan_devices(devices: DeviceSpec, gpus_per_worker: int | None, workers: int | None,
                 evaluators: int = 0) -> DevicePlan:
    """Check ``devices`` and ``gpus_per_worker`` against ``workers`` (None: one per group of
    devices, else 1) and ``evaluators``; the plan, or a `ConfigError` that says what to fix.

    Example::

        plan_devices([0, 1, 2, 3], 2, None).slots  # (("0", "1"), ("2", "3"))
    """
    if devices is None:
        if gpus_per_worker is not None:
            raise ConfigError(
                f"gpus_per_worker={gpus_per_worker!r} needs devices=: pass devices='auto' "
                "(this machine's GPUs) or a list such as devices=[0, 1, 2, 3]")
        return DevicePlan(1 if workers is None else workers)
    per = _check_gpus_per_worker(gpus_per_worker)
    auto = isinstance(devices, str) and devices.strip().lower() == AUTO
    ids, given = _found() if auto else _listed(devices)
    if not ids:
        return DevicePlan(1 if workers is None else workers)
    groups = _groups(ids, per, given, auto)
    workers = len(groups) if workers is None else workers
    processes = workers + evaluators
    if processes < len(groups):
        if not auto:
            leave_out = "" if evaluators else " (or leave workers out)"
            raise ConfigError(
                f"{given}, {len(groups)} group(s) of {per}, but {processes} worker "
                f"process(es) would leave {len(groups) - processes} group(s) idle: pass "
                f"workers={len(groups) - evaluators}{leave_out}, a larger gpus_per_worker, "
                "or list only the devices to use")
        groups = groups[:processes]
    slots = tuple(groups[i % len(groups)] for i in range(processes))
    used = {device for group in slots for device in group}
    _log.info("%s", describe(slots, evaluators, [d for d in ids if d not in used]))
    return DevicePlan(workers, slots)


def _found() -> tuple[list[str], str]:
    """This machine's GPUs for ``"auto"``, and how to name them in an error."""
    ids, source = detect_gpus()
    if not ids:
        _log.info("devices='auto': no GPU found (%s); the workers run without "
                  "CUDA_VISIBLE_DEVICES", source)
    return ids, f"{source} shows {_gpus(len(ids))}"


def _listed(devices: DeviceSpec) -> tuple[list[str], str]:
    ids = listed_devices(devices)
    return ids, f"devices={devices!r} names {_gpus(len(ids))}"


def _groups(ids: list[str], per: int, given: str, auto: bool) -> list[Devices]:
    """``ids`` in disjoint groups of ``per``; ``"auto"`` leaves a remainder out. A MIG
    instance is a group of its own: CUDA enumerates one MIG instance per process, whatever
    else ``CUDA_VISIBLE_DEVICES`` names."""
    if per > len(ids):
        raise ConfigError(f"gpus_per_worker={per} but {given}: lower gpus_per_worker or "
                          "give more devices")
    unused = len(ids) % per
    if unused and not auto:
        raise ConfigError(
            f"{given}, which do not split into groups of gpus_per_worker={per}: give a "
            f"multiple of {per} devices, or another gpus_per_worker")
    groups = [tuple(ids[i:i + per]) for i in range(0, len(ids) - unused, per)]
    mig = next((group for group in groups if per > 1 and any(
        device.startswith("MIG-") for device in group)), None)
    if mig is not None:
        raise ConfigError(
            f"{given}, and gpus_per_worker={per} makes a group {','.join(mig)} with a MIG "
            "instance in it: CUDA shows a process only one MIG instance, so its worker "
            f"would see one device, not {per}: pass gpus_per_worker=1 (a MIG instance per "
            "worker), or list only whole GPUs in devices=")
    return groups


def _check_gpus_per_worker(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"gpus_per_worker must be an int >= 1, got {value!r}")
    return value


def _gpus(count: int) -> str:
    return f"{count} GPU" + ("" if count == 1 else "s")


def describe(slots: Sequence[Devices], evaluators: int, unused: Sequence[str] = ()) -> str:
    """One line: which process slot sees which devices (and what stays unused)."""
    trainers = len(slots) - evaluators
    names = [f"worker {i}" if i < trainers else f"evaluator {i - trainers}"
             for i in range(len(slots))]
    text = "CUDA_VISIBLE_DEVICES: " + ", ".join(
        f"{name}={','.join(group)}" for name, group in zip(names, slots, strict=True))
    shared = len(slots) - len(set(slots))
    if shared:
        text += f" ({len(slots)} processes share {len(set(slots))} device group(s))"
    if unused:
        text += f"; unused: {','.join(unused)}"
    return text


def listed_devices(devices: DeviceSpec) -> list[str]:
    """``devices`` as ``CUDA_VISIBLE_DEVICES`` entries, checked: indices (numbered as CUDA
    numbers the GPUs this process sees) and ``GPU-``/``MIG-`` UUIDs, no duplicates."""
    if isinstance(devices, str):
        items: list[object] = [part.strip() for part in devices.split(",")]
    elif isinstance(devices, Sequence):
        items = list(devices)
    else:
        raise ConfigError(f"devices must be a list such as [0, 1], a string such as '0,1', "
                          f"or 'auto', got {devices!r}")
    if not items or items == [""]:
        raise ConfigError("devices names no GPU: list some, e.g. devices=[0, 1], or leave "
                          "devices out to give the workers no CUDA_VISIBLE_DEVICES")
    ids = [_visible_id(_one_device(item)) for item in items]
    repeated = sorted({d for d in ids if ids.count(d) > 1})
    if repeated:
        raise ConfigError(f"devices lists {', '.join(repeated)} more than once: name each "
                          "GPU once (to run several workers on one GPU, pass more workers "
                          "than devices)")
    return ids


def _one_device(item: object) -> int | str:
    """A GPU index or UUID, as given."""
    text = item.strip() if isinstance(item, str) else None
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        index = int(item)
    elif text is not None and re.fullmatch(r"-?\d+", text):
        index = int(text)
    elif text is not None and _UUID.match(text):
        return text
    else:
        raise ConfigError(f"device {item!r} is neither a GPU index (0, 1, ...) nor a UUID "
                          "(GPU-... or MIG-..., as `nvidia-smi -L` lists them)")
    if index < 0:
        raise ConfigError(f"device {item!r} is negative: GPUs are numbered from 0")
    return index


def _visible_id(device: int | str) -> str:
    """A device as the child's ``CUDA_VISIBLE_DEVICES`` entry. An index counts the GPUs
    that this process sees: with ``CUDA_VISIBLE_DEVICES=2,3`` here (SLURM sets it), 0 is
    GPU 2, as ``cuda:0`` would be in this process."""
    if isinstance(device, str):
        return device
    visible = os.environ.get(VISIBLE)
    if visible is None:
        return str(device)
    entries = visible_entries(visible)
    if device >= len(entries):
        raise ConfigError(
            f"device {device} is not visible here: {VISIBLE}={visible!r} in this process "
            f"shows {_gpus(len(entries))}, which devices= numbers 0 to {len(entries) - 1} as "
            f"CUDA does; list those numbers, pass devices='auto', or unset {VISIBLE}"
            if entries else
            f"device {device} is not visible here: {VISIBLE}={visible!r} in this process "
            f"hides every GPU; unset {VISIBLE} or set it to the GPUs to use")
    return entries[device]


def visible_entries(value: str) -> list[str]:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value shows: its entries up to the first that
    is neither an index nor a UUID (CUDA ignores the rest; ``-1`` or ``""`` show none)."""
    entries = []
    for part in value.split(","):
        entry = part.strip()
        if not (entry.isdigit() or _UUID.match(entry)):
            break
        entries.append(entry)
    return entries


def detect_gpus() -> tuple[list[str], str]:
    """This machine's GPUs for ``devices="auto"``, and where they were found:
    ``CUDA_VISIBLE_DEVICES`` if this process has one (a scheduler's allocation), else
    ``nvidia-smi -L`` (a GPU split into MIG instances counts as its instances, by UUID),
    else ``/proc/driver/nvidia/gpus``."""
    visible = os.environ.get(VISIBLE)
    if visible is not None:
        return visible_entries(visible), f"{VISIBLE}={visible!r}"
    listed = _nvidia_smi()
    if listed is not None:
        return listed, "nvidia-smi -L"
    try:
        count = sum(1 for _ in NVIDIA_PROC.iterdir())
    except OSError:
        return [], f"no nvidia-smi that works, no {NVIDIA_PROC}"
    return [str(i) for i in range(count)], str(NVIDIA_PROC)


def _nvidia_smi() -> list[str] | None:
    """The GPUs ``nvidia-smi -L`` lists (None if it is missing or fails, e.g. no driver)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        done = subprocess.run([program, "-L"], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        _log.debug("nvidia-smi -L failed: %s", error)
        return None
    if done.returncode != 0:
        _log.debug("nvidia-smi -L exited with %d: %s", done.returncode, done.stderr.strip())
        return None
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> list[str]:
    """GPU indices from ``nvidia-smi -L``; a GPU in MIG mode as its instances' UUIDs
    (CUDA selects a MIG instance by UUID only)."""
    gpus: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        gpu, mig = _GPU_LINE.match(line), _MIG_LINE.match(line)
        if gpu:
            gpus.append((gpu.group(1), []))
        elif mig and gpus:
            gpus[-1][1].append(mig.group(1))
    return [device for index, migs in gpus for device in (migs or [index])]


_environ_lock = threading.Lock()


@contextmanager
def visible_devices(devices: Devices | None) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES`` set to ``devices`` in this process's environment while
    inside (None: left as it is), for a process started inside to inherit.

    A spawned worker then has it from its first instruction, before it imports anything:
    also before it re-imports the user's main script, which may touch CUDA at import
    (``torch.cuda.is_available()`` reads the variable once, for good). Multiprocessing
    takes no environment for its children, so the parent's is changed for the moment of
    the start, under a lock, and restored.

    The window: while inside, the whole parent process has ``devices`` as its own. Only
    ``Process.start`` runs inside (pickling the target, fork-exec, and writing the pickle
    to the child's pipe, which waits for the child to read it when it is over the pipe's
    buffer), and pbtune starts its worker processes from the run's own thread only, which
    also runs the callbacks; but another thread of the user's that starts a process or
    first touches CUDA in that moment would see ``devices`` too.

    Nothing better fits: the spawn start method execs the child with the parent's
    environment (``util.spawnv_passfds`` passes no env), and the child imports the
    user's main script (``spawn.prepare``) before it unpickles the target and its
    arguments, so a child that set the variable from an argument would set it too late.
    Only a copy of the private ``popen_spawn_posix.Popen._launch`` could pass one.
    """
    if devices is None:
        yield
        return
    with _environ_lock:
        previous = os.environ.get(VISIBLE)
        os.environ[VISIBLE] = ",".join(devices)
        try:
            yield
        finally:
            if previous is None:
                del os.environ[VISIBLE]
            else:
                os.environ[VISIBLE] = previous
