"""Storage of all controller state: in memory, a SQLite file, or PostgreSQL."""

from pbtune.storages._clock import SYSTEM_CLOCK, Clock, VirtualClock
from pbtune.storages._engine import (
    absolute_sqlite_url,
    is_sqlite_memory,
    is_sqlite_uri,
    normalize_url,
    sqlite_file,
)
from pbtune.storages._holders import Holder
from pbtune.storages._population import Stretch
from pbtune.storages._records import (
    HeldTrial,
    MemberRecord,
    MemberState,
    NewTrial,
    StudyRecord,
    StudyState,
)
from pbtune.storages._storage import Storage
from pbtune.storages._txn import Look, Transaction

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "HeldTrial",
    "Holder",
    "Look",
    "MemberRecord",
    "MemberState",
    "NewTrial",
    "Storage",
    "Stretch",
    "StudyRecord",
    "StudyState",
    "Transaction",
    "VirtualClock",
    "absolute_sqlite_url",
    "is_sqlite_memory",
    "is_sqlite_uri",
    "normalize_url",
    "sqlite_file",
]
