"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a missing
anchor, an unresolved API cross-reference or a docstring mkdocstrings cannot render fails
it), its API and command-line pages are generated from the code, and every relative link
of the built site leads to a page (and anchor) that exists."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
import pytest

from integrations.extras import require

require("mkdocs", "docs")
require("mkdocstrings", "docs")
require("material", "docs")

import pbtune  # noqa: E402
from pbtune.cli import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("index.html", "getting-started/index.html", "concepts/index.html", "cli/index.html",
         "guides/strategies/index.html", "guides/cluster/index.html",
         "reference/study/index.html", "reference/strategies/index.html")
LINK = re.compile(r'(?:href|src)="([^"]*)"')
ANCHOR = re.compile(r'\bid="([^"]*)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with warnings as errors."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    assert "WARNING" not in done.stderr, done.stderr
    return out


def squeezed(text: str) -> str:
    """``text`` without whitespace: HTML wraps and spaces text its own way."""
    return "".join(text.split())


def text_of(page: Path) -> str:
    """A page's text without tags (squeezed)."""
    raw = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
    return squeezed(html.unescape(raw))


def first_line(doc: str | None) -> str:
    """A docstring's first line as the site renders it, squeezed (``code`` loses its
    backticks)."""
    assert doc
    return squeezed(doc.strip().splitlines()[0].replace("`", ""))


def test_pages_are_built(site: Path) -> None:
    for page in PAGES:
        assert (site / page).is_file(), page


def test_api_reference_is_generated_from_docstrings(site: Path) -> None:
    study_page = text_of(site / "reference" / "study" / "index.html")
    for obj in (pbtune.create_study, pbtune.load_study, pbtune.Study.optimize):
        assert first_line(obj.__doc__) in study_page, obj
    strategies_page = text_of(site / "reference" / "strategies" / "index.html")
    for cls in (pbtune.Tournament, pbtune.Perturb, pbtune.PB2, pbtune.Lagging):
        assert first_line(cls.__doc__) in strategies_page, cls
    # The literal blocks of the docstrings (``Example::``) become highlighted Python.
    raw = (site / "reference" / "study" / "index.html").read_text(encoding="utf-8")
    assert "Example::" not in raw
    assert '<div class="highlight"><pre><span></span><code><span class="n">study</span>' in raw


def test_cli_page_has_every_command_help(site: Path) -> None:
    page = text_of(site / "cli" / "index.html")
    context = click.Context(cli, info_name="pbtune")
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        assert command is not None and command.help
        assert squeezed(f"Usage: pbtune {name} [OPTIONS]") in page, name
        assert squeezed(command.help.strip().splitlines()[0]) in page, name


def test_every_relative_link_resolves(site: Path) -> None:
    broken: list[str] = []
    for page in site.rglob("*.html"):
        if page.name == "404.html":  # root-relative links, for a site served at its root
            continue
        source = page.read_text(encoding="utf-8")
        for link in LINK.findall(source):
            parts = urlsplit(html.unescape(link))
            if parts.scheme or parts.netloc or link.startswith(("#", "mailto:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
            elif parts.fragment and target.suffix == ".html" and (
                parts.fragment not in ANCHOR.findall(target.read_text(encoding="utf-8"))
            ):
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_every_public_name_has_a_reference_entry() -> None:
    pages = "".join(p.read_text(encoding="utf-8")
                    for p in (ROOT / "docs" / "reference").glob("*.md"))
    missing = [name for name in pbtune.__all__
               if name != "__version__" and f"::: pbtune.{name}\n" not in pages]
    assert not missing, f"add these to a page of docs/reference/: {missing}"
