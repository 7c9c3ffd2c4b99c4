"""Parameter definitions: `Float`, `Int` and `Choice`.

Every value they produce is a plain JSON scalar, so params are stored as JSON and
round-trip exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbtune._errors import SearchSpaceError

JSONScalar = str | int | float | bool | None

# A linear parameter sitting at 0 cannot be moved by multiplication; from there it moves
# by (factor - 1) times this share of its range instead.
_ZERO_STEP_SHARE = 0.1


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_finite_number(value: Any) -> bool:
    """A number that is a finite float (an int too large for a float is not)."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_integral(value: Any) -> bool:
    """An int of any size, or a finite float without a fraction."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return True
    return _is_finite_number(value) and float(value).is_integer()


def _shown(value: Any) -> str:
    """``repr``, except for ints beyond 64 bits (Python refuses to print the longest)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def _check_flags(param: Any, *names: str) -> None:
    # A truthy string such as "no" must not silently switch a flag on.
    for name in names:
        value = getattr(param, name)
        if not isinstance(value, (bool, np.bool_)):
            raise SearchSpaceError(
                f"{type(param).__name__} {name} must be True or False, got {value!r}"
            )
        object.__setattr__(param, name, bool(value))


@dataclass(frozen=True)
class Float:
    """A real-valued parameter in ``[low, high]``.

    Example: ``pbtune.Float(1e-4, 1e-1, log=True)``.
    """

    low: float
    high: float
    log: bool = False
    mutable: bool = True

    def __post_init__(self) -> None:
        _check_flags(self, "log", "mutable")
        for name in ("low", "high"):
            value = getattr(self, name)
            if not _is_finite_number(value):
                raise SearchSpaceError(
                    f"Float {name} must be a finite number, got {_shown(value)}"
                )
            object.__setattr__(self, name, float(value))
        if self.low >= self.high:
            raise SearchSpaceError(
                f"Float needs low < high, got low={self.low!r}, high={self.high!r}"
            )
        if not math.isfinite(self.high - self.low):
            raise SearchSpaceError(
                f"Float range [{self.low!r}, {self.high!r}] is too wide to sample; "
                "use log=True or narrower bounds"
            )
        if self.log and self.low <= 0:
            raise SearchSpaceError(
                f"Float(log=True) needs low > 0, got low={self.low!r}; use log=False "
                "or a positive lower bound"
            )

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = float(rng.uniform(self.low, self.high))
        return self.clip(value)

    def perturb(self, value: Any, factor: float) -> float:
        current = float(value)
        if current == 0.0 and not self.log:
            moved = (factor - 1.0) * _ZERO_STEP_SHARE * (self.high - self.low)
        else:
            moved = current * factor
        return self.clip(moved)

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))

    def contains(self, value: Any) -> bool:
        return _is_finite_number(value) and self.low <= float(value) <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log,
                "mutable": self.mutable}


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` (both inclusive).

    With ``log=True`` the prior is log-uniform between ``low`` and ``high``, rounded, and
    explore multiplies it by a factor; otherwise the prior is uniform over the integers.
    A perturbation always moves an integer at least one step the way the factor goes
    (where the bound allows), so small values do not stick.

    Example: ``pbtune.Int(16, 256, log=True)``.
    """

    low: int
    high: int
    log: bool = False
    mutable: bool = True

    def __post_init__(self) -> None:
        _check_flags(self, "log", "mutable")
        for name in ("low", "high"):
            value = getattr(self, name)
            if not _is_integral(value):
                raise SearchSpaceError(f"Int {name} must be an integer, got {_shown(value)}")
            object.__setattr__(self, name, int(value))
        if self.low >= self.high:
            raise SearchSpaceError(
                f"Int needs low < high, got low={self.low!r}, high={self.high!r}"
            )
        if not (self.low >= _INT64_MIN and self.high < _INT64_MAX):
            raise SearchSpaceError(
                f"Int bounds must fit in 64 bits, got low={_shown(self.low)}, "
                f"high={_shown(self.high)}"
            )
        if self.log and self.low <= 0:
            raise SearchSpaceError(
                f"Int(log=True) needs low >= 1, got low={self.low!r}; use log=False "
                "or a positive lower bound"
            )

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # Log-uniform between low and high, rounded: the bound gets what lies within
            # half a step of it (Int(1, 512, log=True) draws 1 about 6% of the time). Over
            # [low - 0.5, high + 0.5] the lowest value took a far wider slice of the log
            # scale than the values above it (16% for that Int), and a study that
            # resamples often piled up at its lower bound.
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return self.clip(round(value))
        return int(rng.integers(self.low, self.high + 1))

    def perturb(self, value: Any, factor: float) -> int:
        current = int(value)
        if current == 0:
            step = (factor - 1.0) * _ZERO_STEP_SHARE * (self.high - self.low)
            moved = round(step)
        else:
            moved = round(current * factor)
        if moved == current and factor != 1.0:
            # One step the way the multiplication goes: away from zero for factor > 1.
            moved = current + (1 if (factor > 1.0) == (current >= 0) else -1)
        return self.clip(moved)

    def clip(self, value: float) -> int:
        return int(min(max(int(value), self.low), self.high))

    def contains(self, value: Any) -> bool:
        return _is_integral(value) and self.low <= int(value) <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log,
                "mutable": self.mutable}


@dataclass(frozen=True)
class Choice:
    """A parameter that takes one of a few JSON scalar values.

    ``ordered=True`` means neighbours are similar: explore steps to a neighbour.
    Otherwise explore resamples. Example: ``pbtune.Choice([64, 128, 256], ordered=True)``.
    """

    choices: Sequence[JSONScalar]
    ordered: bool = False
    mutable: bool = True

    def __post_init__(self) -> None:
        _check_flags(self, "ordered", "mutable")
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Sequence):
            raise SearchSpaceError(
                f"Choice needs a list of values, got {self.choices!r}"
            )
        values = tuple(self.choices)
        if not values:
            raise SearchSpaceError("Choice needs at least one value, got an empty list")
        for value in values:
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise SearchSpaceError(
                    f"Choice values must be JSON scalars (str, int, float, bool, None), "
                    f"got {value!r} of type {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise SearchSpaceError(f"Choice values must be finite, got {value!r}")
            if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
                # JSON readers and databases hold 64-bit ints; so does Int.
                raise SearchSpaceError(
                    f"Choice int values must fit in 64 bits, got {_shown(value)}"
                )
        keys = [_choice_key(v) for v in values]
        if len(set(keys)) != len(keys):
            raise SearchSpaceError(f"Choice values must be distinct, got {list(values)!r}")
        object.__setattr__(self, "choices", values)

    def sample(self, rng: np.random.Generator) -> JSONScalar:
        return self.choices[int(rng.integers(len(self.choices)))]

    def neighbour(self, value: Any, rng: np.random.Generator) -> JSONScalar:
        """The value one place to the left or right (ends step inwards)."""
        if len(self.choices) == 1:
            return self.choices[0]
        index = self.index(value)
        step = -1 if rng.random() < 0.5 else 1
        if not 0 <= index + step < len(self.choices):
            step = -step
        return self.choices[index + step]

    def index(self, value: Any) -> int:
        key = _choice_key(value)
        for i, choice in enumerate(self.choices):
            if _choice_key(choice) == key:
                return i
        raise SearchSpaceError(f"{value!r} is not one of {list(self.choices)!r}")

    def contains(self, value: Any) -> bool:
        key = _choice_key(value)
        return any(_choice_key(c) == key for c in self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "choices": list(self.choices), "ordered": self.ordered,
                "mutable": self.mutable}


def _choice_key(value: Any) -> tuple[str, Any]:
    # True == 1 in Python; a choice between them must keep them apart.
    return (type(value).__name__ if isinstance(value, bool) or value is None else "num"
            if isinstance(value, (int, float)) else "str", value)


Param = Float | Int | Choice
