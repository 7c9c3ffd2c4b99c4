"""Shared fixtures: the storage backends that the one storage suite runs against.

``backend`` is parametrized over "memory", "sqlite" and "postgresql". PostgreSQL needs a
server: set ``PBTUNE_TEST_POSTGRES_URL=postgresql://user@host:5432/db`` (the CI script does).
Without it those tests are skipped, unless ``PBTUNE_REQUIRE_POSTGRES=1`` makes the skip a
failure, so CI can never pass by silently skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import settings

from pbtune import Storage
from pbtune.storages import normalize_url
from pbtune.storages._schema import metadata

# Property tests draw the same examples on every run, so CI is deterministic; run
# PBTUNE_HYPOTHESIS_PROFILE=explore to search with fresh random examples.
settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("PBTUNE_HYPOTHESIS_PROFILE", "deterministic"))

POSTGRES_URL_ENV = "PBTUNE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "PBTUNE_REQUIRE_POSTGRES"
POSTGRES_SKIP_REASON = (
    f"set {POSTGRES_URL_ENV}=postgresql://... to run the PostgreSQL storage tests"
)
BACKENDS = ("memory", "sqlite", "postgresql")


def postgres_url() -> str:
    """The test server's URL; skips (or fails, when PostgreSQL is required) without one."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not url:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(
                f"{REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is not set; "
                f"{POSTGRES_SKIP_REASON}",
                pytrace=False,
            )
        pytest.skip(POSTGRES_SKIP_REASON)
    return url


def drop_pbtune_tables(url: str) -> None:
    """Start a PostgreSQL test from an empty pbtune schema."""
    # A session left holding a lock fails the drop after 10 s instead of hanging the run.
    engine = sqlalchemy.create_engine(
        normalize_url(url),
        connect_args={"connect_timeout": 5, "options": "-c lock_timeout=10000"},
    )
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()


class Backend:
    """One storage backend under test; ``open()`` gives another handle on the same database
    (a fresh, separate database for "memory", which cannot be shared)."""

    def __init__(self, name: str, url: str | None) -> None:
        self.name = name
        self.url = url
        self._opened: list[Storage] = []

    @property
    def shared(self) -> bool:
        """Whether two `open()` calls see the same database."""
        return self.url is not None

    def open(self) -> Storage:
        storage = Storage(self.url)
        self._opened.append(storage)
        return storage

    def close(self) -> None:
        for storage in self._opened:
            storage.dispose()
        self._opened.clear()

    def __repr__(self) -> str:
        return f"Backend({self.name})"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name = request.param
    if name == "memory":
        chosen = Backend(name, None)
    elif name == "sqlite":
        chosen = Backend(name, f"sqlite:///{tmp_path}/s.db")
    else:
        url = postgres_url()
        drop_pbtune_tables(url)
        chosen = Backend(name, url)
    yield chosen
    chosen.close()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    """A fresh storage on the backend under test."""
    return backend.open()
