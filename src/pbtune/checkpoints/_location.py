"""Checkpoint locations: a local directory (a `Path`) or an fsspec URL (a `str`).

A URL stays a string: `Path("s3://bucket/x")` would fold "//" into "/".
"""

from __future__ import annotations

import re
from pathlib import Path

Location = Path | str

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: object) -> bool:
    """True for ``scheme://...`` (``s3://bucket/prefix``, ``file:///abs``), not for a path."""
    return isinstance(text, str) and _URL.match(text) is not None


def as_location(text: str) -> Location:
    """A stored checkpoint reference as a `Path` (local) or a URL `str` (remote)."""
    return text if is_url(text) else Path(text)
