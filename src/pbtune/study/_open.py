"""Which storage a study API call means: a URL, a `Storage`, or None (in memory)."""

from __future__ import annotations

from pbtune.storages import Storage

DEFAULT_STORAGE = "sqlite:///pbtune.db"

StorageLike = Storage | str | None


def open_storage(storage: StorageLike) -> Storage:
    return storage if isinstance(storage, Storage) else Storage(storage)
