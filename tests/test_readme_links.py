"""The README's relative links and images (the dashboard screenshots under docs/) point at
files of the repository, so they work on GitHub and in a checkout."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_relative_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [link for link in MARKDOWN_LINK.findall(readme)
             if not urlsplit(link).scheme and not link.startswith("#")]
    assert any(link.endswith(".png") for link in links), "the README shows its screenshots"
    missing = [link for link in links if not (ROOT / unquote(urlsplit(link).path)).exists()]
    assert not missing, f"README links to missing files: {missing}"
