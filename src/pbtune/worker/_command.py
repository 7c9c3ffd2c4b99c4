"""`Command`: a training function that runs any program, in any language, for each trial.

The protocol (files and environment variables) is in the README, "Command trials".
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pbtune._errors import ConfigError, TrialFailedError
from pbtune.trial import Trial

STDERR_TAIL_LINES = 40
READER_JOIN_S = 5.0  # how long to wait for output still buffered after the command exited
_PR_SET_PDEATHSIG = 1


class Command:
    """A picklable training function that runs ``args`` as a subprocess for each trial.

    The command reads its trial from ``PBTUNE_TRIAL_FILE`` (JSON) or the ``PBTUNE_*``
    environment variables, trains from ``PBTUNE_START_STEP`` to ``PBTUNE_END_STEP``,
    warm-starts from ``PBTUNE_PARENT_CHECKPOINT`` (empty for a member's first trial),
    saves into ``PBTUNE_CHECKPOINT_DIR`` and writes its metrics, a JSON object, to
    ``PBTUNE_METRICS_FILE``. A non-zero exit, a timeout (``timeout`` seconds; the
    command's whole process group is killed) or missing metrics fail the trial.

    ``args`` is a list of arguments or a string split like a POSIX shell (`shlex.split`);
    no shell runs unless the arguments start one. ``env`` is added to the worker's
    environment; ``cwd`` is the command's working directory.

    Example::

        study.optimize(pbtune.Command(["python", "train.py"]), workers=4)
    """

    def __init__(
        self,
        args: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float | None = None,
    ) -> None:
        parts = shlex.split(args) if isinstance(args, str) else list(args)
        if not parts or not all(isinstance(part, str) for part in parts):
            raise ConfigError(
                f"a command must be a non-empty string or list of strings, got {args!r}"
            )
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.args: tuple[str, ...] = tuple(parts)
        self.env: dict[str, str] = {str(k): str(v) for k, v in (env or {}).items()}
        self.cwd = None if cwd is None else str(cwd)
        self.timeout = None if timeout is None else float(timeout)

    def __repr__(self) -> str:
        return f"Command({shlex.join(self.args)!r})"

    def __call__(self, trial: Trial) -> dict[str, Any]:
        # Beside the checkpoint's staging folder, which the end of a run sweeps, so the
        # files of a worker killed mid-trial do not pile up in /tmp.
        staging = Path(trial.checkpoint_dir)
        with tempfile.TemporaryDirectory(prefix=f"{staging.name}.command-",
                                         dir=staging.parent) as scratch:
            metrics_file = Path(scratch) / "metrics.json"
            trial_file = Path(scratch) / "trial.json"
            info = trial_info(trial, metrics_file)
            trial_file.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            env = {**os.environ, **self.env, **trial_env(info),
                   "PBTUNE_TRIAL_FILE": str(trial_file)}
            code, reason, tail = self._execute(env)
            if reason is None and code != 0:
                reason = f"exited with code {code}" if code > 0 else (
                    f"was killed by signal {_signal_name(-code)}")
            if reason is not None:
                raise TrialFailedError(self._failure(reason, tail))
            return self._read_metrics(metrics_file, tail)

    def _execute(self, env: dict[str, str]) -> tuple[int, str | None, list[str]]:
        """Run the command to its end: (exit code, why it failed if not by its code,
        the last lines of its stderr). Its output is copied to this process's stderr."""
        # The SIGTERM handler goes in before the command starts: a SIGTERM that came
        # between the start and the handler would end the worker at once and leave what
        # the command had started meanwhile running.
        with _kill_group_on_sigterm() as group:
            try:
                process = subprocess.Popen(
                    self.args, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group, to kill it whole
                    preexec_fn=_die_with_parent(),
                )
            except OSError as error:  # not found, not executable, bad cwd
                what = f"{error.strerror}: {error.filename!r}" if error.filename else str(error)
                raise TrialFailedError(
                    f"command {shlex.join(self.args)!r} cannot be started: {what}"
                    + (f" (cwd {self.cwd!r})" if self.cwd else "")
                ) from None
            tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
            assert process.stdout is not None and process.stderr is not None
            readers = [_copy_lines(process.stdout, None), _copy_lines(process.stderr, tail)]
            reason = None
            try:
                group.started(process.pid)  # a SIGTERM held meanwhile acts now
                process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                reason = f"timed out after {self.timeout:g} s and was killed"
            finally:  # also on KeyboardInterrupt: nothing the command started is left running
                _kill_group(process.pid)
                process.wait()
                for reader in readers:
                    reader.join(READER_JOIN_S)
        return process.returncode, reason, list(tail)

    def _failure(self, reason: str, tail: list[str]) -> str:
        text = f"command {shlex.join(self.args)!r} {reason}"
        if tail:
            text += f"\nlast {len(tail)} line(s) of its stderr:\n" + "".join(tail).rstrip()
        else:
            text += " (its stderr was empty)"
        return text

    def _read_metrics(self, path: Path, tail: list[str]) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TrialFailedError(self._failure(
                "exited with code 0 but wrote no metrics: write a JSON object such as "
                '{"accuracy": 0.9} to the file named by $PBTUNE_METRICS_FILE', tail)) from None
        try:
            metrics = json.loads(text)
        except ValueError as error:
            raise TrialFailedError(self._failure(
                f"wrote metrics that are not valid JSON ({error}): {text[:200]!r}", tail
            )) from None
        if not isinstance(metrics, dict):
            raise TrialFailedError(self._failure(
                f"wrote metrics {text.strip()[:200]!r}; they must be a JSON object such as "
                '{"accuracy": 0.9}', tail))
        return metrics


def trial_info(trial: Trial, metrics_file: Path) -> dict[str, Any]:
    """The contents of ``PBTUNE_TRIAL_FILE``."""
    parent = trial.parent_checkpoint
    return {
        "params": dict(trial.params),
        "trial_id": trial.id,
        "number": trial.number,
        "member": trial.member,
        "generation": trial.generation,
        "start_step": trial.start_step,
        "end_step": trial.end_step,
        "seed": trial.seed,
        "study": trial.study_name,
        "parent_checkpoint": None if parent is None else str(Path(parent).resolve()),
        "checkpoint_dir": str(Path(trial.checkpoint_dir).resolve()),
        "metrics_file": str(metrics_file),
    }


def trial_env(info: Mapping[str, Any]) -> dict[str, str]:
    """The ``PBTUNE_*`` environment variables of a trial (all but ``PBTUNE_TRIAL_FILE``)."""
    env = {
        "PBTUNE_PARAMS": json.dumps(info["params"]),
        "PBTUNE_START_STEP": str(info["start_step"]),
        "PBTUNE_END_STEP": str(info["end_step"]),
        "PBTUNE_CHECKPOINT_DIR": info["checkpoint_dir"],
        "PBTUNE_PARENT_CHECKPOINT": info["parent_checkpoint"] or "",
        "PBTUNE_METRICS_FILE": info["metrics_file"],
        "PBTUNE_TRIAL_ID": str(info["trial_id"]),
        "PBTUNE_MEMBER": str(info["member"]),
        "PBTUNE_SEED": str(info["seed"]),
        "PBTUNE_STUDY": info["study"],
    }
    for name, value in info["params"].items():
        env[param_variable(name)] = value if isinstance(value, str) else json.dumps(value)
    return env


def param_variable(name: str) -> str:
    """``PBTUNE_PARAM_`` + the name upper-cased, other than letters and digits as ``_``."""
    return "PBTUNE_PARAM_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _copy_lines(pipe: IO[bytes], tail: collections.deque[str] | None) -> threading.Thread:
    """Copy ``pipe`` to this process's stderr line by line (keeping the last lines in
    ``tail``), in a thread, so a command that writes a lot never blocks on a full pipe."""

    def copy() -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                if tail is not None:
                    tail.append(line)
                with contextlib.suppress(OSError, ValueError):  # stderr closed: drain on
                    sys.stderr.write(line)
                    sys.stderr.flush()

    thread = threading.Thread(target=copy, name="pbtune-command-output", daemon=True)
    thread.start()
    return thread


def _kill_group(pid: int) -> None:
    """SIGKILL the command's process group: whatever it left running goes with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Group:
    """The command's process group, for the SIGTERM handler of `_kill_group_on_sigterm`."""

    def __init__(self, previous: Any = None) -> None:
        self._previous = previous  # None: not the main thread, no handler
        self._pid: int | None = None
        self._pending = False  # a SIGTERM came before the command's pid was known

    def started(self, pid: int) -> None:
        self._pid = pid
        if self._pending:
            self.terminate()

    def on_sigterm(self, signum: int, frame: object) -> None:
        if self._pid is None:
            self._pending = True  # the command is being started: kill it once it is
            return
        self.terminate()

    def terminate(self) -> None:
        """Kill the command's group, then end the worker as the SIGTERM would have."""
        if self._pid is not None:
            _kill_group(self._pid)
        signal.signal(signal.SIGTERM, self._previous)
        signal.raise_signal(signal.SIGTERM)


@contextlib.contextmanager
def _kill_group_on_sigterm() -> Iterator[_Group]:
    """While the command runs, a SIGTERM to the worker (how a run stops its workers) kills
    the command's process group first, then ends the worker as it would have anyway.

    Enter it before the command starts and give it the pid (`_Group.started`): a SIGTERM
    in between is held until the group can be killed.
    Only the main thread can set signal handlers; in a thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield _Group()
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # set outside Python
        previous = signal.SIG_DFL
    group = _Group(previous)
    signal.signal(signal.SIGTERM, group.on_sigterm)
    try:
        yield group
    finally:
        signal.signal(signal.SIGTERM, previous)
        if group._pending and group._pid is None:  # the command never started
            signal.raise_signal(signal.SIGTERM)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _die_with_parent() -> Any:
    """On Linux, a ``preexec_fn`` that makes the kernel SIGKILL the command when the
    worker dies, even by SIGKILL (``PR_SET_PDEATHSIG``); elsewhere None.

    libc is loaded here, in the worker, so the child only makes one system call between
    fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)

    return preexec
