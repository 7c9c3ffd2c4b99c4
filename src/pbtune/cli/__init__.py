"""The `pbtune` command line: run a study from a YAML file, read its results, replay a
schedule. It reads studies through the storage API only."""

from pbtune.cli._main import cli, main

__all__ = ["cli", "main"]
