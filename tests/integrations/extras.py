"""For the tests of pbtune's optional integrations (PyTorch, Lightning, Transformers, TensorBoard,
MLflow, the documentation site).

Each test module asks for its library with `require` at module level: without the library
installed the tests skip with the extra to install, unless ``PBTUNE_REQUIRE_INTEGRATIONS=1``
(set by CI) makes the skip a failure, so CI can never pass by silently skipping them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRE_INTEGRATIONS_ENV = "PBTUNE_REQUIRE_INTEGRATIONS"


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` for a test, or skip it (fail under ``PBTUNE_REQUIRE_INTEGRATIONS=1``)
    with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"{module} is not installed ({error}): pip install -e '.[{extra}]'"
        if os.environ.get(REQUIRE_INTEGRATIONS_ENV) == "1":
            pytest.fail(f"{REQUIRE_INTEGRATIONS_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

# Usage, at the top of a test module (tests/ is on sys.path, as for ``from e2e import ...``):
#     from integrations.extras import require
#     torch = require("torch", "torch")
