"""Search spaces: `Float`, `Int`, `Choice` and the `SearchSpace` that holds them."""

from pbtune.space._params import Choice, Float, Int, Param
from pbtune.space._space import SearchSpace, param_from_dict

__all__ = ["Choice", "Float", "Int", "Param", "SearchSpace", "param_from_dict"]
