"""The dashboard tests' shared study: one real PBT run in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pbtune
from dashboard.toy import make_study


@pytest.fixture(scope="package")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pbtune.Study]:
    storage = pbtune.Storage(None)
    yield make_study(storage, tmp_path_factory.mktemp("checkpoints"))
    storage.dispose()
