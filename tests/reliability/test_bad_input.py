"""Bad input: every mistake a user can make gets a clear pbtune error, and nothing already
recorded is lost.

Search spaces and study files are fuzzed with hypothesis (either a valid result or a
`pbtune.PbtuneError`; from the CLI one line on stderr and a non-zero exit, never a
traceback). Bad results of training functions run in a real study with two worker
processes on SQLite. Tricky names must never lead pbtune to write outside
``checkpoint_root``, and files that are not pbtune databases must be left byte for byte.

Every bad input tried is counted by category; the counts are written to
``$PBTUNE_BAD_INPUT_COUNTS`` (default: ``bad_input_counts.json`` in pytest's base temp dir).
"""

from __future__ import annotations

import collections
import gc
import hashlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pbtune
from pbtune import (
    CheckpointError,
    Choice,
    Float,
    Int,
    PbtuneError,
    SearchSpace,
    SearchSpaceError,
    StorageError,
    StudyFailedError,
    TrialState,
)
from pbtune.cli import cli
from pbtune.cli._config import load_config
from pbtune.space import param_from_dict
from pbtune.storages._schema import SCHEMA_VERSION
from pbtune.worker import run_worker

from . import bad_input_workload as workload

WORKLOAD = Path(__file__).with_name("bad_input_workload.py")
FUZZ = settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])

# -- counting what was tried ---------------------------------------------------------------

TRIED: collections.Counter[str] = collections.Counter()
ACCEPTED: collections.Counter[str] = collections.Counter()  # fuzzed inputs that were valid


def tried(category: str, count: int = 1) -> None:
    TRIED[category] += count


def accepted(category: str) -> None:
    ACCEPTED[category] += 1


@pytest.fixture(scope="module", autouse=True)
def _write_counts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    default = tmp_path_factory.getbasetemp() / "bad_input_counts.json"
    path = Path(os.environ.get("PBTUNE_BAD_INPUT_COUNTS") or default)
    path.write_text(json.dumps({
        "total": sum(TRIED.values()),
        "by_category": dict(sorted(TRIED.items())),
        "fuzzed_inputs_that_were_valid": dict(sorted(ACCEPTED.items())),
    }, indent=2) + "\n")


# -- helpers -------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[Path, tuple[int, int] | None]:
    """Every path under ``root``: files with (size, mtime), directories with None."""
    found: dict[Path, tuple[int, int] | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[Path(folder) / name] = None
        for name in files:
            path = Path(folder) / name
            stat = path.lstat()
            found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def assert_wrote_only_under(
    before: dict[Path, tuple[int, int] | None], after: dict[Path, tuple[int, int] | None],
    *allowed: Path,
) -> None:
    """Nothing was created or changed outside ``allowed`` (a database also matches its
    ``-wal``/``-shm``/``-journal`` files)."""

    def inside(path: Path) -> bool:
        for root in allowed:
            if path == root or root in path.parents:
                return True
            if path.parent == root.parent and path.name.startswith(root.name + "-"):
                return True
        return False

    for path, stat in after.items():
        if not inside(path):
            assert before.get(path, "absent") == stat, f"pbtune wrote {path}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digest(folder: Path) -> dict[str, str]:
    gc.collect()  # a refused Storage closes its connection (and SQLite its -wal) when freed
    return {p.name: digest(p) if p.is_file() else "dir" for p in sorted(folder.iterdir())}


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, prog_name="pbtune")


def assert_one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def small_study(name: str, root: Path, **overrides: Any) -> pbtune.Study:
    settings_: dict[str, Any] = dict(
        storage=None, space={"x": Float(0.0, 1.0)}, metric=workload.METRIC,
        population_size=2, steps_per_trial=1, max_steps=2, checkpoint_root=root / "ckpt",
    )
    settings_.update(overrides)
    return pbtune.create_study(name, **settings_)


# -- values a user might pass by mistake ---------------------------------------------------

# (10**5000 is too long to print: hypothesis could not show it, pbtune must not try)
HUGE = [10**400, -(10**400), 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64]
TOO_LONG_TO_PRINT = 10**5000
nasty_numbers = st.one_of(
    st.floats(),  # nan, inf, -inf, subnormals, -0.0
    st.integers(),
    st.sampled_from([*HUGE, 1e308, -1e308, 5e-324, -0.0, 2**53 + 1]),
    st.booleans(),
    st.sampled_from([np.float64("nan"), np.float32(1.5), np.int64(3), np.bool_(True),
                     np.int8(-1), np.uint64(2**64 - 1), np.float16("inf")]),
)
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.sampled_from(HUGE[:4]), st.text(max_size=6))
yaml_junk = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
junk = st.recursive(
    st.one_of(yaml_scalars, nasty_numbers, st.binary(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
plain_numbers = st.one_of(st.integers(-5, 5), st.integers(1, 2**62), st.floats(-10, 10),
                          st.floats(1e-6, 1.0))
bad_values = st.one_of(nasty_numbers, junk)
PARAM_CLASSES: dict[str, type[Float] | type[Int] | type[Choice]] = {
    "float": Float, "int": Int, "choice": Choice,
}


@st.composite
def param_fields(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A param's kind and fields: valid ones, then spoiled in zero to two places."""
    kind = draw(st.sampled_from(sorted(PARAM_CLASSES)))
    fields: dict[str, Any]
    if kind == "choice":
        fields = {"choices": draw(st.lists(yaml_scalars, min_size=1, max_size=5, unique_by=repr)),
                  "ordered": draw(st.booleans())}
    else:
        a, b = draw(plain_numbers), draw(plain_numbers)
        fields = {"low": min(a, b), "high": max(a, b), "log": draw(st.booleans())}
    fields["mutable"] = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        fields[draw(st.sampled_from(sorted(fields)))] = draw(bad_values)
    if kind == "choice" and isinstance(fields["choices"], list) and draw(st.booleans()):
        fields["choices"].insert(draw(st.integers(0, 5)), draw(bad_values))
    return kind, fields


def check_valid_param(param: Float | Int | Choice) -> None:
    """A param that was accepted is usable: samples inside, explains itself as JSON."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert param.contains(param.sample(rng))
    data = param.to_dict()
    json.loads(json.dumps(data, allow_nan=False))
    assert param_from_dict("p", data) == param
    if isinstance(param, (Float, Int)):
        assert math.isfinite(param.low) and math.isfinite(param.high)
        assert param.low < param.high
    if isinstance(param, Int):
        assert param.low >= -(2**63) and param.high < 2**63


# -- search spaces: Python objects ---------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(spec=param_fields())
def test_params_accept_or_explain(spec: tuple[str, dict[str, Any]]) -> None:
    tried("space objects: fuzzed Float/Int/Choice fields")
    kind, fields = spec
    cls = PARAM_CLASSES[kind]
    try:
        param = cls(**fields)
    except SearchSpaceError as error:
        assert str(error).startswith(cls.__name__), error
        return
    accepted("space objects: fuzzed Float/Int/Choice fields")
    check_valid_param(param)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Float(10**400, 1.0), r"Float low must be a finite number"),
        (lambda: Float(0.0, -(10**400)), r"Float high must be a finite number"),
        (lambda: Float(-(10**400), 10**400), r"Float low must be a finite number"),
        (lambda: Int(0, 10**400), r"Int bounds must fit in 64 bits"),
        (lambda: Int(-(10**400), 0), r"Int bounds must fit in 64 bits"),
        (lambda: Int(np.uint64(2**64 - 1), 2**65), r"Int bounds must fit in 64 bits"),
        (lambda: Choice([1, TOO_LONG_TO_PRINT]), r"Choice int values must fit in 64 bits"),
        (lambda: Int(0, TOO_LONG_TO_PRINT), r"Int bounds must fit in 64 bits, .*16610 bits"),
        (lambda: Float(TOO_LONG_TO_PRINT, 0), r"Float low must be a finite number"),
        (lambda: Choice([2**63]), r"Choice int values must fit in 64 bits"),
        (lambda: Float(0.0, np.float16("inf")), r"Float high must be a finite number"),
        (lambda: Float(np.bool_(False), 1.0), r"Float low must be a finite number"),
        (lambda: Int(0, 3, mutable=np.float64(1.0)), r"Int mutable must be True or False"),
        (lambda: Choice([np.bool_(True), 1]), r"Choice values must be JSON scalars"),
        (lambda: Choice([b"bytes"]), r"Choice values must be JSON scalars"),
        (lambda: SearchSpace({"x": Float}), r"'x' must be pbtune.Float"),  # the class
        (lambda: SearchSpace({("x",): Float(0, 1)}), r"names must be non-empty strings"),
    ],
)
def test_huge_and_odd_values_in_params(make: Any, message: str) -> None:
    tried("space objects: fixed huge and odd values")
    with pytest.raises(SearchSpaceError, match=message):
        make()


def test_huge_values_do_not_break_contains() -> None:
    for param in (Float(0.0, 1.0), Int(0, 5), Choice([1, 2])):
        for value in [*HUGE, TOO_LONG_TO_PRINT]:
            tried("space objects: huge values given to contains")
            assert param.contains(value) is False
    space = SearchSpace({"n": Int(0, 5)})
    with pytest.raises(SearchSpaceError, match=r"param 'n'=.* is outside"):
        space.validate({"n": 10**400})


# -- search spaces: the dict / YAML form ---------------------------------------------------

@st.composite
def space_specs(draw: st.DrawFn) -> Any:
    """A param's dict form: valid, or with a key dropped or added, a bad type, or junk."""
    kind, fields = draw(param_fields())
    spec: dict[Any, Any] = {"type": kind, **fields}
    action = draw(st.sampled_from(["keep", "keep", "drop", "retype", "extra", "junk"]))
    if action == "drop":
        del spec[draw(st.sampled_from(sorted(spec)))]
    elif action == "retype":
        spec["type"] = draw(st.one_of(st.sampled_from(["Float", "", "float ", "bool"]), junk))
    elif action == "extra":
        spec[draw(st.one_of(st.text(max_size=5), st.integers()))] = draw(bad_values)
    elif action == "junk":
        return draw(junk)
    return spec


space_dicts = st.one_of(
    junk,
    st.dictionaries(
        st.one_of(st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans()),
        space_specs(), max_size=4,
    ),
)


@FUZZ
@given(data=space_dicts)
def test_space_from_dict_accepts_or_explains(data: Any) -> None:
    tried("space dicts: fuzzed nested junk")
    try:
        space = SearchSpace.from_dict(data)
    except SearchSpaceError as error:
        text = str(error)
        assert text and "\n" not in text.strip()
        assert text.startswith(("space must be", "parameter ")), text
        return
    accepted("space dicts: fuzzed nested junk")
    for param in space.values():
        check_valid_param(param)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert space.validate(space.sample(np.random.default_rng(1)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": {"type": ["float"]}}, r"parameter 'lr': type must be one of"),
        ({"lr": {"type": {"float": 1}}}, r"parameter 'lr': type must be one of"),
        ({"lr": {"type": None, "low": 0, "high": 1}}, r"type must be one of .*got None"),
        ({"lr": {"type": "float", "low": 0}}, r"parameter 'lr': .*'high'"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "step": 2}}, r"parameter 'lr': .*step"),
        ({"lr": {"type": "float", 1: 0, "high": 1}}, r"parameter 'lr'"),
        ({"lr": {"type": "float", "low": ".1", "high": 1}}, r"low must be a finite number"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": "true"}}, r"True or False"),
        ({"lr": {"type": "int", "low": True, "high": 4}}, r"Int low must be an integer"),
        ({"lr": {"type": "choice", "choices": {"a": 1}}}, r"needs a list of values"),
        ({"lr": {"type": "choice"}}, r"parameter 'lr': .*'choices'"),
        ({"lr": ["float", 0, 1]}, r"parameter 'lr': expected a mapping"),
        ({1: {"type": "int", "low": 0, "high": 3}, "1": {"type": "int", "low": 0, "high": 5}},
         r"parameter '1' is defined twice"),
        ([{"lr": {"type": "float"}}], r"space must be a non-empty mapping"),
        ({}, r"space must be a non-empty mapping"),
    ],
)
def test_bad_space_dicts(data: Any, message: str) -> None:
    tried("space dicts: fixed cases")
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace.from_dict(data)


# -- study files for `pbtune run` ----------------------------------------------------------

VALID_STUDY = """\
name: fuzz
metric: score
mode: max
population_size: 2
steps_per_trial: 1
max_steps: 2
seed: 3
max_retries: 1
keep_best: 1
heartbeat_timeout: 30
trial_timeout: 60
exploit: {type: truncation, fraction: 0.5}
explore: {type: perturb, factors: [0.8, 1.25], resample_probability: 0.25}
checkpoint_root: ckpt
space:
  lr: {type: float, low: 1e-4, high: 1e-1, log: true}
  width: {type: choice, choices: [64, 128], ordered: true}
"""

plausible = {
    "name": st.one_of(st.text(max_size=10), st.sampled_from(["../x", "a/b", "  "])),
    "storage": st.sampled_from(["sqlite:///s.db", "mysql://u@h/db", "not a url", "sqlite://",
                                "sqlite:///.", "sqlite:///no/such/dir/s.db", ""]),
    "metric": st.one_of(st.sampled_from(["score", ""]), st.text(max_size=4)),
    "mode": st.sampled_from(["max", "min", "maximize", "MAX"]),
    "population_size": st.one_of(st.integers(-2, 4), st.sampled_from([2**31, 10**20, 2.0])),
    "steps_per_trial": st.one_of(st.integers(-1, 3), st.sampled_from([2**31, 10**20, 1.5])),
    "max_steps": st.one_of(st.integers(-1, 5), st.sampled_from([2**31 - 1, 2**31, 10**20])),
    "seed": st.one_of(st.integers(-1, 10**30), st.sampled_from([2**63, 10**400])),
    "max_retries": st.one_of(st.integers(-1, 3), st.sampled_from([2**31, 10**20])),
    "keep_best": st.one_of(st.integers(-1, 3), st.sampled_from([10**20])),
    "heartbeat_timeout": st.one_of(st.floats(), st.sampled_from([1e300, 0, -1, "60s"])),
    "trial_timeout": st.one_of(st.none(), st.floats(), st.sampled_from([1e300, 0, "1h"])),
    "exploit": st.one_of(
        st.sampled_from(["tournament", "truncation", "random", "os:system", "nope:Nope"]),
        st.fixed_dictionaries({"type": st.sampled_from(["tournament", "truncation", "x"])},
                              optional={"window": yaml_junk, "fraction": yaml_junk,
                                        "size": yaml_junk}),
    ),
    "explore": st.one_of(
        st.sampled_from(["perturb", "resample", "mutate"]),
        st.fixed_dictionaries({"type": st.sampled_from(["perturb", "resample"])},
                              optional={"factors": yaml_junk,
                                        "resample_probability": yaml_junk}),
    ),
    "checkpoint_root": st.one_of(
        st.sampled_from(["ckpt", "a/../b", "~nosuchuser_pbtune/ckpt", "bad\x00path", ""]),
        yaml_junk),
    "fitness": st.one_of(st.sampled_from(["nope:fn", "fitness", "no_such.py:f", "os:getcwd"]),
                         yaml_junk),
    "space": st.one_of(
        st.just({"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}),
        st.dictionaries(st.text(max_size=4),
                        st.one_of(yaml_junk, st.fixed_dictionaries(
                            {"type": st.sampled_from(["float", "int", "choice"])},
                            optional={"low": yaml_junk, "high": yaml_junk,
                                      "choices": yaml_junk, "log": yaml_junk})),
                        max_size=3),
        yaml_junk),
}


@st.composite
def study_files(draw: st.DrawFn) -> str:
    """A study file: random settings (valid, odd or junk), random keys, or a damaged text."""
    how = draw(st.sampled_from(["settings", "settings", "keys", "damaged"]))
    if how == "damaged":
        start = draw(st.integers(0, len(VALID_STUDY)))
        cut = draw(st.integers(0, 40))
        insert = draw(st.text(alphabet=":{}[]-#&*!|>'\"%@`\t\n ,?x1.\x00", max_size=6))
        return VALID_STUDY[:start] + insert + VALID_STUDY[start + cut:]
    data: dict[Any, Any] = yaml.load(VALID_STUDY, Loader=yaml.SafeLoader)
    for key in draw(st.lists(st.sampled_from(sorted(plausible)), max_size=4, unique=True)):
        if draw(st.booleans()):
            data[key] = draw(plausible[key])
        else:
            data.pop(key, None)
    if how == "keys":
        data.update(draw(st.dictionaries(
            st.one_of(st.text(max_size=6), st.integers(), st.booleans()), yaml_junk,
            max_size=2)))
        if draw(st.booleans()):
            data = draw(yaml_junk)  # not even a mapping
    return yaml.safe_dump(data, allow_unicode=True)


def run_study_file(folder: Path, text: str) -> pbtune.Study | None:
    """Load a study file and create its study (in memory); None where it is refused."""
    path = folder / "study.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path)
    except PbtuneError as error:
        assert str(error).startswith(str(path)), error
        return None
    population = config.options.get("population_size", 8)
    if isinstance(population, int) and population > 64:
        return None  # valid, but creating so many members is not what this test is about
    try:
        return pbtune.create_study(config.name or "fuzz", storage=None, **config.options)
    except PbtuneError as error:
        assert str(error), type(error)
        return None


@FUZZ
@given(text=study_files())
def test_study_files_load_or_explain(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    tried("study files: fuzzed, through load_config and create_study")
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    study = run_study_file(folder, text)
    if study is not None:
        accepted("study files: fuzzed, through load_config and create_study")
        config = study.config
        assert pbtune.controller.StudyConfig.from_dict(config.to_dict(),
                                                       fitness=config.fitness) == config


@SLOW_FUZZ
@given(text=study_files())
def test_pbtune_run_with_fuzzed_study_files(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """The CLI's own loader and error handling: a study is created, or one line on stderr."""
    tried("study files: fuzzed, through `pbtune run`")
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    (folder / "study.yaml").write_text(text, encoding="utf-8")
    ran: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # relative storage and checkpoint paths land in the folder
        # Only the input handling is under test here: training is stubbed out.
        patch.setattr(pbtune.Study, "optimize", lambda self, *a, **k: ran.append(self.name))
        before = snapshot(folder)
        result = invoke(["run", f"{WORKLOAD}:well_behaved", "--config", "study.yaml",
                         "--no-progress"])
    if result.exit_code == 0:
        accepted("study files: fuzzed, through `pbtune run`")
        assert len(ran) == 1, result.output
        assert "Traceback" not in result.output
    else:
        assert_one_line_error(result)
        assert not ran
    # Nothing outside the folder, and nothing but a database and checkpoints inside it.
    assert_wrote_only_under(before, snapshot(folder), folder / "s.db", folder / "pbtune.db",
                            folder / "study.yaml")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("checkpoint_root: ~nosuchuser_pbtune/ckpt\n", ["checkpoint_root", "nosuchuser"]),
        ('checkpoint_root: "a\\0b"\n', ["checkpoint_root", "null"]),
        ("checkpoint_root: [a, b]\n", ["'checkpoint_root' must be a path"]),
        ("checkpoint_root: afile/ckpt\n", ["checkpoint_root", "afile", "not a directory"]),
        ("max_steps: 100000000000000000000\nsteps_per_trial: 1\n", ["max_steps must be an int"]),
        ("population_size: 1e400\n", ["population_size must be an int"]),
        ("population_size: .nan\n", ["population_size must be an int"]),
        ("steps_per_trial: true\n", ["steps_per_trial must be an int"]),
        ("heartbeat_timeout: .inf\n", ["heartbeat_timeout must be a positive number"]),
        ("trial_timeout: .nan\n", ["trial_timeout must be a positive number"]),
        ("seed: 1e3\n", ["seed must be an int"]),
        ("mode: [max]\n", ["mode must be 'max' or 'min'"]),
        ("name: [a]\n", ["'name' must be a non-empty string"]),
        ("name: " + "n" * 600 + "\n", ["study name is 600 characters long"]),
        ("storage: 5\n", ["'storage' must be a non-empty string"]),
        ("space: {lr: {type: [float]}}\n", ["parameter 'lr': type must be one of"]),
        ("space: {1: {type: int, low: 0, high: 3}, '1': {type: int, low: 0, high: 5}}\n",
         ["parameter '1' is defined twice"]),
        ("space: {n: {type: int, low: 0, high: 100000000000000000000000}}\n", ["64 bits"]),
        ("space: {lr: {type: float, low: .nan, high: 1}}\n", ["low must be a finite number"]),
        ("space: {c: {type: choice, choices: [[1], 2]}}\n", ["JSON scalars"]),
        ("exploit: {type: tournament, window: -1}\n", ["window"]),
        ("explore: {type: perturb, factors: [.nan]}\n", ["factors"]),
        ("fitness: [1]\n", ["'fitness' must be"]),
        ("\x00\n", ["invalid YAML"]),
        ("- a\n- b\n", ["expected a mapping"]),
    ],
)
def test_bad_study_files_through_the_cli(tmp_path: Path, extra: str, needles: list[str]) -> None:
    tried("study files: fixed cases through `pbtune run`")
    (tmp_path / "afile").write_text("a regular file\n")
    keys = {line.split(":")[0] for line in extra.splitlines() if ":" in line}
    base = "".join(line + "\n" for line in VALID_STUDY.splitlines()
                   if line.split(":")[0] not in keys and not line.startswith("  "))
    if "space" not in keys:
        base += "space: {lr: {type: float, low: 0.1, high: 1}}\n"
    text = extra if extra.startswith(("\x00", "- ")) else base + extra
    (tmp_path / "study.yaml").write_text(text)
    db = tmp_path / "bad.db"
    before = snapshot(tmp_path)
    result = invoke(["run", f"{WORKLOAD}:well_behaved", "--config",
                     str(tmp_path / "study.yaml"), "--storage", f"sqlite:///{db}",
                     "--no-progress"])
    assert_one_line_error(result, *needles)
    assert snapshot(tmp_path) == before  # refused before anything was written


# -- bad results in a real study: two worker processes on SQLite ---------------------------

STUDY_NAME = "b'a\"d `../../../etc/passwd` /abs\\path 日本語 🚀 nul\x00 " + "n" * 400
PARAM_SPACE = {
    "../lr": Float(0.1, 1.0),
    "a/b\\c": Int(1, 5),
    "q\"u'o`te": Choice(["x", "../y", "日本"]),
    "日本語 🚀": Float(1e-3, 1.0, log=True),
    "nul\x00byte": Choice([1, 2, 3], ordered=True),
    "L" * 300: Int(0, 3, mutable=False),
}


def test_bad_results_fail_their_trial_and_the_study_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN, inf, None, strings, lists, a missing metric, a non-dict, non-string keys, bools,
    a raise and a hang each fail one trial with the reason stored; the member retries and
    the study finishes. numpy scalars are accepted. Every child finds its parent's
    checkpoint in a read-only directory."""
    tried("metrics and training behaviour in a real study", len(workload.KINDS))
    tried("names in a real study with processes", 1 + len(PARAM_SPACE))
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv(workload.SEEN_ENV, str(seen))
    db, root = tmp_path / "db" / "bad.db", tmp_path / "ckpt"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    before = snapshot(tmp_path)
    study = pbtune.create_study(
        STUDY_NAME, storage=url, space=PARAM_SPACE, metric=workload.METRIC,
        population_size=2, steps_per_trial=1, max_steps=4, max_retries=20,
        # A member fails about eight times in a row here: the default backoff (1 s,
        # doubled each time) would wait four minutes; a short one still backs off.
        retry_delay=0.01, trial_timeout=1.5, checkpoint_root=root, seed=1,
    )
    study.optimize(f"{WORKLOAD}:misbehaves", workers=2, show_progress=False)

    study = pbtune.load_study(STUDY_NAME, storage=url)
    assert study.name == STUDY_NAME and study.state == pbtune.StudyState.COMPLETE
    assert study.config.space == SearchSpace(PARAM_SPACE)
    trials = study.trials()
    by_number = {t.number: t for t in trials}
    for number, (kind, expected) in enumerate(workload.KINDS):
        trial = by_number[number]
        assert set(trial.params) == set(PARAM_SPACE)
        if expected is None:
            assert trial.state == TrialState.COMPLETE, (kind, trial.error)
            assert trial.metrics is not None
            assert all(type(v) is float for v in trial.metrics.values())
            continue
        assert trial.state == TrialState.FAILED, kind
        assert expected in (trial.error or ""), (kind, trial.error)
        assert trial.checkpoint is None and trial.fitness is None
        retry = [t for t in trials if t.decision == "retry" and t.member == trial.member
                 and t.start_step == trial.start_step and t.number > trial.number]
        assert retry and retry[0].params == trial.params
        assert retry[0].parent_id == trial.parent_id
    raised = by_number[[k for k, _ in workload.KINDS].index("raises")].error or ""
    assert "Traceback (most recent call last)" in raised and "_explode" in raised
    for member in range(2):
        latest = max((t for t in trials if t.member == member), key=lambda t: t.number)
        assert latest.state == TrialState.COMPLETE and latest.end_step == 4

    records = [json.loads(p.read_text()) for p in seen.iterdir()]
    assert records
    for record in records:
        assert record["is_dir"] and record["files"] == ["state.json"]
    assert_wrote_only_under(before, snapshot(tmp_path), root, db, seen)


# -- names ---------------------------------------------------------------------------------

name_parts = st.one_of(
    st.sampled_from(["/", "\\", ".", "..", "../", "\x00", "'", '"', "`", " ", "\n", "日本",
                     "🚀", "é", "~", "$HOME", "%s", "{}", ":", "*", "\u202e", "C:\\"]),
    st.text(max_size=3),
)
names = st.one_of(
    st.lists(name_parts, min_size=1, max_size=8).map("".join),
    st.text(min_size=1, max_size=20),
    st.sampled_from(["../../escape", "/abs/path", "n" * 512, "n" * 513, "..", ".", "~",
                     "\x00", " ", "\t\n"]),
)


@pytest.fixture(scope="module")
def names_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("names")


@SLOW_FUZZ
@given(study_name=names, param_names=st.lists(names, min_size=1, max_size=3, unique=True))
def test_names_stay_inside_checkpoint_root_and_round_trip(
    names_root: Path, study_name: str, param_names: list[str]
) -> None:
    tried("names: fuzzed study and param names, trials run in-process")
    folder = Path(tempfile.mkdtemp(dir=names_root))
    db, root = folder / "s.db", folder / "ckpt"
    url = f"sqlite:///{db}"
    space = {name: Float(0.0, 1.0) for name in param_names}
    before = snapshot(names_root)
    try:
        study = pbtune.create_study(study_name, storage=url, space=space, metric="score",
                                    population_size=2, steps_per_trial=1, max_steps=2,
                                    checkpoint_root=root)
    except (pbtune.ConfigError, SearchSpaceError) as error:
        assert not study_name.strip() or len(study_name) > 512 or "" in param_names, error
        assert_wrote_only_under(before, snapshot(names_root), db)
        return
    accepted("names: fuzzed study and param names, trials run in-process")
    run_worker(study.storage, study_name, workload.well_behaved)
    study.storage.dispose()

    again = pbtune.load_study(study_name, storage=url)
    assert again.name == study_name
    assert [s.name for s in again.storage.list_studies()] == [study_name]
    assert list(again.config.space) == param_names
    trials = again.trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        assert list(trial.params) == param_names
        assert trial.checkpoint is None or root in trial.checkpoint.parents
        assert again.reports(trial.id) == [(trial.start_step, {"score": 0.0})]
    assert again.checkpoint_dir.parent == root.resolve()
    again.storage.dispose()
    assert_wrote_only_under(before, snapshot(names_root), db, root)


# -- checkpoint roots that cannot be written -----------------------------------------------


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file", "under_a_file_deep"])
def test_an_unwritable_checkpoint_root_is_refused_at_create_study(
    tmp_path: Path, where: str
) -> None:
    tried("checkpoint roots: unwritable at create_study")
    (tmp_path / "afile").write_text("not a directory\n")
    root = {"under_a_file": tmp_path / "afile" / "ckpt", "is_a_file": tmp_path / "afile",
            "under_a_file_deep": tmp_path / "afile" / "a" / "b"}[where]
    db = tmp_path / "s.db"
    with pytest.raises(CheckpointError, match=r"checkpoint_root .*afile.* not a directory"):
        small_study("s", tmp_path, storage=f"sqlite:///{db}", checkpoint_root=root)
    assert not db.exists()  # refused before anything was recorded
    assert (tmp_path / "afile").read_text() == "not a directory\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a chmod 0o500 directory anyway")
def test_a_read_only_checkpoint_root_is_refused_at_create_study(tmp_path: Path) -> None:
    tried("checkpoint roots: read-only directory")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(CheckpointError, match=r"checkpoint_root .*locked.* not writable"):
            small_study("s", tmp_path, checkpoint_root=locked / "ckpt")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("root", [5, None, b"ckpt", "", "bad\x00path", "~nosuchuser_pbtune/x"])
def test_checkpoint_roots_that_are_not_paths(tmp_path: Path, root: Any) -> None:
    tried("checkpoint roots: not a usable path")
    with pytest.raises(pbtune.ConfigError, match=r"checkpoint_root"):
        small_study("s", tmp_path, checkpoint_root=root)


def test_a_checkpoint_root_lost_after_create_fails_each_first_trial_once(tmp_path: Path) -> None:
    """The root became a file after the study was created: every member's first trial fails
    with a clear reason, the study stops (no crash loop), and goes on once it is fixed."""
    tried("checkpoint roots: unwritable at the first trial")
    study = small_study("s", tmp_path, population_size=3)
    (tmp_path / "ckpt").write_text("in the way\n")
    with pytest.raises(StudyFailedError,
                       match=r"cannot create checkpoint directory .*checkpoint_root is writable"):
        study.optimize(f"{WORKLOAD}:well_behaved", workers=2, show_progress=False)
    failed = study.trials([TrialState.FAILED])
    # Each member's first trial failed, and nothing got past a first segment. How many
    # retries failed too depends on how the two workers interleaved; but the study stopped
    # as soon as every member had failed: no trial was claimed after that (no crash loop).
    assert {t.member for t in failed} == {0, 1, 2}
    assert all(t.start_step == 0 for t in study.trials())
    assert all("checkpoint_root is writable" in (t.error or "") for t in failed)
    everyone_failed = max(min(t.finished_at or 0.0 for t in failed if t.member == member)
                          for member in range(3))
    assert all(t.started_at is not None and t.started_at <= everyone_failed for t in failed)
    assert not study.trials([TrialState.RUNNING])
    (tmp_path / "ckpt").unlink()
    study.optimize(f"{WORKLOAD}:well_behaved", workers=2, show_progress=False)
    assert study.state == pbtune.StudyState.COMPLETE
    assert [t.id for t in study.trials([TrialState.FAILED])] == [t.id for t in failed]


# -- databases pbtune cannot use -----------------------------------------------------------


def make_database(folder: Path, version: str) -> str:
    """A real pbtune database with finished trials, then stamped with ``version``."""
    db = folder / "study.db"
    url = f"sqlite:///{db}"
    study = small_study("kept", folder, storage=url)
    run_worker(study.storage, "kept", workload.well_behaved)
    study.storage.dispose()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE pbtune_meta SET value = ? WHERE key = 'schema_version'",
                           (version,))
    connection.close()
    return url


@pytest.mark.parametrize("version", [str(SCHEMA_VERSION + 1), "0", "1.0", "",
                                     "99999999999999999999", "abc'"])
def test_an_unknown_schema_version_is_refused_and_left_untouched(
    tmp_path: Path, version: str
) -> None:
    url = make_database(tmp_path, version)
    before = folder_digest(tmp_path)
    message = f"schema version {version!r}; this pbtune reads version {SCHEMA_VERSION}"
    attempts: list[Any] = [
        lambda: pbtune.Storage(url),
        lambda: pbtune.load_study("kept", storage=url),
        lambda: small_study("kept", tmp_path, storage=url, load_if_exists=True),
        lambda: small_study("new", tmp_path, storage=url),
    ]
    for attempt in attempts:
        tried("databases: unknown schema version (Python API)")
        with pytest.raises(StorageError, match=message.replace(".", r"\.").replace("(", r"\(")):
            attempt()
        assert folder_digest(tmp_path) == before
    (tmp_path / "study.yaml").write_text(VALID_STUDY)
    for args in (["status"], ["trials", "--format", "json"], ["best"],
                 ["run", f"{WORKLOAD}:well_behaved", "--config", str(tmp_path / "study.yaml")]):
        tried("databases: unknown schema version (CLI)")
        assert_one_line_error(invoke([*args, "--storage", url]), "schema version")
        assert folder_digest(tmp_path) == {**before, "study.yaml": digest(tmp_path / "study.yaml")}


NOT_DATABASES = {
    "one_byte": b"x",
    "short_text": b"lr: 0.1\n",
    "yaml": VALID_STUDY.encode(),
    "png_header": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "sqlite_magic_then_junk": b"SQLite format 3\x00" + b"\xff" * 4000,
    "sqlite_magic_only": b"SQLite format 3\x00",
    "half_magic": b"SQLite fo",
    "nul_bytes": b"\x00" * 100,
}


@pytest.mark.parametrize("name", sorted(NOT_DATABASES))
def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path, name: str) -> None:
    path = tmp_path / "data.db"
    path.write_bytes(NOT_DATABASES[name])
    before = folder_digest(tmp_path)
    for attempt in (lambda: pbtune.Storage(f"sqlite:///{path}"),
                    lambda: small_study("s", tmp_path, storage=f"sqlite:///{path}")):
        tried("databases: fixed files that are not databases")
        with pytest.raises(StorageError, match=r"not (an SQLite|a) database"):
            attempt()
        assert folder_digest(tmp_path) == before
    tried("databases: fixed files that are not databases (CLI)")
    assert_one_line_error(invoke(["status", "--storage", f"sqlite:///{path}"]), "database")
    assert folder_digest(tmp_path) == before


@SLOW_FUZZ
@given(data=st.one_of(st.binary(min_size=1, max_size=4096),
                      st.binary(max_size=4096).map(lambda b: b"SQLite format 3\x00" + b)))
def test_random_bytes_are_refused_untouched(names_root: Path, data: bytes) -> None:
    tried("databases: random bytes")
    folder = Path(tempfile.mkdtemp(dir=names_root))
    path = folder / "random.db"
    path.write_bytes(data)
    with pytest.raises(StorageError, match=r"database"):
        pbtune.Storage(f"sqlite:///{path}")
    assert folder_digest(folder) == {"random.db": hashlib.sha256(data).hexdigest()}


def test_an_empty_file_is_a_new_database(tmp_path: Path) -> None:
    # Nothing is recorded in an empty file, so it may become a database (as SQLite does).
    path = tmp_path / "empty.db"
    path.touch()
    small_study("s", tmp_path, storage=f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


@pytest.mark.parametrize("where", ["directory", "under_a_file", "missing_folder"])
def test_a_database_path_that_cannot_be_a_file(tmp_path: Path, where: str) -> None:
    tried("databases: a path that cannot be a database file")
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "adir.db").mkdir()
    path = {"directory": tmp_path / "adir.db", "under_a_file": tmp_path / "afile" / "s.db",
            "missing_folder": tmp_path / "no" / "such" / "s.db"}[where]
    before = snapshot(tmp_path)
    with pytest.raises(StorageError, match=r"cannot open storage .*unable to open"):
        pbtune.Storage(f"sqlite:///{path}")
    assert_one_line_error(invoke(["status", "--storage", f"sqlite:///{path}"]))
    assert snapshot(tmp_path) == before
    assert not list((tmp_path / "adir.db").iterdir())


def test_a_study_files_storage_that_is_not_a_database(tmp_path: Path) -> None:
    tried("databases: a study file's storage that is not a database")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "study.yaml").write_text(VALID_STUDY + "storage: sqlite:///notes.txt\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = invoke(["run", f"{WORKLOAD}:well_behaved", "--config", "study.yaml"])
    assert_one_line_error(result, "notes.txt", "not an SQLite database")
    assert (tmp_path / "notes.txt").read_text() == "x"
