"""pbtune's version, apart from the root package: the root re-exports the whole API, and no
module of pbtune imports it (the CLI shows the version from here)."""

__version__ = "0.1.0"
