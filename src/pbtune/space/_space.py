"""The search space: named parameters, validated once, sampled from a seeded generator."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pbtune._errors import SearchSpaceError
from pbtune.space._params import Choice, Float, Int, Param

_KINDS: dict[str, type[Float] | type[Int] | type[Choice]] = {
    "float": Float,
    "int": Int,
    "choice": Choice,
}


class SearchSpace(Mapping[str, Param]):
    """An immutable mapping from parameter names to `Float`, `Int` or `Choice`."""

    def __init__(self, params: Mapping[str, Param]) -> None:
        if isinstance(params, SearchSpace):
            self._params: dict[str, Param] = dict(params._params)
            return
        if not isinstance(params, Mapping) or not params:
            raise SearchSpaceError(
                "space must be a non-empty dict of name -> pbtune.Float / Int / Choice, "
                f"got {params!r}"
            )
        checked: dict[str, Param] = {}
        for name, param in params.items():
            if not isinstance(name, str) or not name:
                raise SearchSpaceError(f"parameter names must be non-empty strings, got {name!r}")
            if not isinstance(param, (Float, Int, Choice)):
                raise SearchSpaceError(
                    f"parameter {name!r} must be pbtune.Float, pbtune.Int or pbtune.Choice, "
                    f"got {param!r}; {_how_to_write(param)}"
                )
            checked[name] = param
        self._params = checked

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"SearchSpace({self._params!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SearchSpace):
            return self.to_dict() == other.to_dict()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One value for every parameter, drawn from its prior."""
        return {name: param.sample(rng) for name, param in self._params.items()}

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check that ``params`` names every parameter, with a value inside its bounds."""
        missing = sorted(set(self._params) - set(params))
        extra = sorted(set(params) - set(self._params))
        if missing or extra:
            raise SearchSpaceError(
                f"params do not match the search space: missing {missing}, unknown {extra}"
            )
        for name, param in self._params.items():
            value = params[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise SearchSpaceError(f"param {name!r} is {value!r}, not a finite number")
            if not param.contains(value):
                raise SearchSpaceError(f"param {name!r}={value!r} is outside {param!r}")
        return {name: params[name] for name in self._params}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: param.to_dict() for name, param in self._params.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Build a space from its JSON/YAML form, e.g. ``{"lr": {"type": "float", ...}}``."""
        if not isinstance(data, Mapping) or not data:
            raise SearchSpaceError(
                f"space must be a non-empty mapping of name -> definition, got {data!r}"
            )
        params: dict[str, Param] = {}
        for name, spec in data.items():
            if str(name) in params:  # YAML keys 1 and "1" are one name here
                raise SearchSpaceError(f"parameter {str(name)!r} is defined twice")
            params[str(name)] = param_from_dict(str(name), spec)
        return cls(params)


def param_from_dict(name: str, spec: Any) -> Param:
    """One parameter from ``{"type": "float"|"int"|"choice", ...}``."""
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(
            f"parameter {name!r}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}, "
            f"got {spec!r}"
        )
    fields = dict(spec)
    kind = fields.pop("type", None)
    if not isinstance(kind, str) or kind not in _KINDS:
        raise SearchSpaceError(
            f"parameter {name!r}: type must be one of {sorted(_KINDS)}, got {kind!r}"
        )
    try:
        return _KINDS[kind](**fields)
    except TypeError as error:
        raise SearchSpaceError(f"parameter {name!r}: {error}") from None
    except SearchSpaceError as error:
        raise SearchSpaceError(f"parameter {name!r}: {error}") from None


def _how_to_write(value: object) -> str:
    """What a newcomer probably meant by ``value`` (a list, a range, a fixed value)."""
    if isinstance(value, (list, tuple)) and value:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if numbers and len(value) == 2:
            low, high = sorted(value)
            kind = "Int" if all(isinstance(v, int) for v in value) else "Float"
            return (f"a range is pbtune.{kind}({low!r}, {high!r}) (add log=True for a "
                    f"learning rate), a set of values pbtune.Choice({list(value)!r})")
        return f"a set of values is pbtune.Choice({list(value)!r})"
    if isinstance(value, (bool, int, float, str)):
        return (f"a value that never changes is pbtune.Choice([{value!r}], mutable=False), or "
                "leave it out of the space and set it in your training function")
    return "e.g. pbtune.Float(1e-4, 1e-1, log=True), pbtune.Int(16, 256), pbtune.Choice(['a', 'b'])"
