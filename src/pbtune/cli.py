"""The `pbtune` command line (placeholder until the CLI lands)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("pbtune: the command line is not built yet")
