"""Opening a study's checkpoint store from its ``checkpoint_root``: a path or a URL.

Only this module knows which kind of store a root means; fsspec (for a URL) is imported
only when a remote root is used.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pbtune.checkpoints._local import LocalStore, check_local_root, resolve_local_root
from pbtune.checkpoints._location import is_url
from pbtune.checkpoints._store import CheckpointStore


def resolve_root(root: Any) -> str:
    """``checkpoint_root`` as stored: an absolute path, or a URL without a trailing "/"."""
    if isinstance(root, str) and is_url(root.strip()):
        from pbtune.checkpoints import _remote

        return _remote.normalize_url(root.strip())
    return str(resolve_local_root(root))


def check_root(root: str) -> None:
    """Refuse, before anything is recorded, a root no checkpoint could be written under."""
    if is_url(root):
        from pbtune.checkpoints import _remote

        _remote.check_url(root)
    else:
        check_local_root(Path(root))


def open_store(root: str, study_dir_name: str) -> CheckpointStore:
    """The store of a study whose ``checkpoint_root`` is ``root`` (a path or a URL)."""
    if is_url(root):
        from pbtune.checkpoints import _remote

        return _remote.RemoteStore(root, study_dir_name)
    return LocalStore(Path(root) / study_dir_name)


def study_dir_name(study_name: str, salt: str) -> str:
    """A directory name safe on every file system, whatever the study's name holds."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name).strip("._")[:48] or "study"
    digest = hashlib.sha256(f"{study_name}\0{salt}".encode()).hexdigest()[:8]
    return f"{slug}-{digest}"

