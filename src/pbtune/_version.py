"""pbtune's version, apart from the root package so the CLI can show it without importing
``pbtune/__init__.py`` (which imports every subpackage, the CLI's own included)."""

__version__ = "0.1.0"
